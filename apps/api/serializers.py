"""Serializer helpers shared by every API."""

from __future__ import annotations

from rest_framework import serializers


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, instead of silently ignoring them, and
    numbers where text is expected (DRF would turn 5 into "5")."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            errors = {name: ["Unknown field."] for name in sorted(set(data) - set(self.fields))}
            for name, field in self.fields.items():
                if name not in data or data[name] is None:
                    continue
                value = data[name]
                if _is_text(field) and not isinstance(value, str):
                    errors[name] = ["Must be a string."]
                elif isinstance(field, serializers.ListField) and _is_text(field.child) and isinstance(value, list):
                    # [0] would otherwise become ["0"].
                    wrong = {index: ["Must be a string."] for index, item in enumerate(value)
                             if not isinstance(item, str)}
                    if wrong:
                        errors[name] = wrong
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class WindowedDateTimeField(serializers.DateTimeField):
    """A timestamp the service accepts only inside a moving window.

    ``window(now)`` returns (earliest, latest); ``rule`` says it in words. The
    service enforces it (it is a business rule of every caller, not only of
    the API); this field carries it so the OpenAPI schema can state the days
    it covers when generated.
    """

    def __init__(self, *, window, rule: str = "", **kwargs):
        self.window = window
        self.rule = rule
        super().__init__(**kwargs)


class JsonObjectField(serializers.DictField):
    """A free-form JSON object, stored as jsonb: PostgreSQL cannot store the
    NUL character (nor an unpaired surrogate) in it, so text holding one, in a
    key or a value at any depth, is refused with 400 instead of failing at
    the database."""

    default_error_messages = {"text": "Text in this object (keys included) must not contain {what}."}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        what = _unstorable_text(value)
        if what:
            self.fail("text", what=what)
        return value


def _unstorable_text(value) -> str | None:
    texts = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, dict):
            texts.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    for text in texts:
        if "\x00" in text:
            return "the NUL character"
        if any("\ud800" <= char <= "\udfff" for char in text):
            return "an unpaired surrogate"
    return None


def _is_text(field) -> bool:
    return isinstance(field, serializers.CharField | serializers.ChoiceField)


def validated(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
