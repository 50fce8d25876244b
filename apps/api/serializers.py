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


def _is_text(field) -> bool:
    return isinstance(field, serializers.CharField | serializers.ChoiceField)


def validated(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
