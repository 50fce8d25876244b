"""The base of the endpoints a signed link opens (an export's file, a whole
tenant's archive): no credentials but the link's token, checked first; then
the stored file, or 404 when it is gone."""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.core.validators import RegexValidator
from django.http import FileResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny

from apps.http.errors import NotFound

from .serializers import StrictSerializer
from .views import TenantAPIView


class DownloadQuery(StrictSerializer):
    # A signed token is about 100 characters of URL-safe text.
    token = serializers.CharField(max_length=500, validators=[RegexValidator(r"^[A-Za-z0-9_:.-]+$")],
                                  help_text="From the export's download_url.")


class SignedDownloadApi(TenantAPIView):
    """Subclasses say how a token is checked, which finished export it names
    and how its file is called; ``get`` (with its schema) calls ``serve``."""

    authentication_classes = []
    permission_classes = [AllowAny]
    no_file_detail = "This export has no file."

    def token_valid(self, request, export_id: str, token: str) -> bool:
        raise NotImplementedError

    def finished_export(self, request, export_id):
        """The export, done, or None."""
        raise NotImplementedError

    def attachment(self, request, export) -> dict:
        """FileResponse's ``filename`` (and ``content_type`` where it is not guessed)."""
        raise NotImplementedError

    def serve(self, request, export_id) -> FileResponse:
        if not self.token_valid(request, str(export_id), self.query["token"]):
            raise NotFound("This download link is not valid or has expired.")
        export = self.finished_export(request, export_id)
        if export is None or not export.file_name or not default_storage.exists(export.file_name):
            raise NotFound(self.no_file_detail)
        return FileResponse(default_storage.open(export.file_name, "rb"), as_attachment=True,
                            **self.attachment(request, export))
