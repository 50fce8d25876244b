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
                text_field = isinstance(field, serializers.CharField | serializers.ChoiceField)
                if text_field and name in data and data[name] is not None and not isinstance(data[name], str):
                    errors[name] = ["Must be a string."]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


def validated(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
