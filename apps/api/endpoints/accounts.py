"""Members, invitations, API keys and tokens of the host's tenant."""

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from apps.accounts import api_keys, selectors, services
from apps.accounts.models import ApiKey, Invitation, Membership
from apps.api.serializers import StrictSerializer, validated
from apps.api.views import TenantAPIView
from apps.http.errors import NotFound
from apps.ratelimit import password_attempts


class TokenApi(TenantAPIView):
    """Exchange a member's email and password for a short-lived token."""

    authentication_classes = []
    permission_classes = [AllowAny]

    class TokenInput(StrictSerializer):
        email = serializers.EmailField()
        password = serializers.CharField(max_length=200)

    class TokenOutput(serializers.Serializer):
        token = serializers.CharField()
        token_type = serializers.CharField()
        expires_in = serializers.IntegerField()

    @extend_schema(request=TokenInput, responses={201: TokenOutput}, auth=[], operation_id="auth_token")
    def post(self, request):
        data = validated(self.TokenInput, request.data)
        # Password guesses: limited per account and address (429 + Retry-After while locked).
        with password_attempts.guarded(request, email=data["email"]):
            token = services.user_token_issue(tenant_id=request.tenant.pk, email=data["email"],
                                              password=data["password"])
        return Response({"token": token, "token_type": "Bearer", "expires_in": settings.USER_TOKEN_SECONDS},
                        status=status.HTTP_201_CREATED)


class MeApi(TenantAPIView):
    class MeOutput(serializers.Serializer):
        kind = serializers.CharField()
        role = serializers.CharField()
        user_id = serializers.IntegerField(allow_null=True)
        email = serializers.CharField(allow_null=True)
        api_key = serializers.CharField(allow_null=True)
        tenant = serializers.CharField()

    @extend_schema(responses=MeOutput, operation_id="me")
    def get(self, request):
        principal = request.user
        return Response({
            "kind": principal.kind, "role": principal.role,
            "user_id": principal.user.pk if principal.user else None,
            "email": principal.user.email if principal.user else None,
            "api_key": principal.api_key.prefix if principal.api_key else None,
            "tenant": request.tenant.slug,
        })


class MemberOutput(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email")

    class Meta:
        model = Membership
        fields = ["id", "user_id", "email", "role", "created_at"]


class MemberListApi(TenantAPIView):
    @extend_schema(responses=MemberOutput(many=True), operation_id="members_list")
    def get(self, request):
        return Response(MemberOutput(selectors.memberships_of_tenant(tenant_id=request.tenant.pk), many=True).data)


class MemberDetailApi(TenantAPIView):
    write_role = Membership.Role.ADMIN

    class MemberRoleInput(StrictSerializer):
        role = serializers.ChoiceField(choices=Membership.Role.choices)

    def _membership(self, request, membership_id) -> Membership:
        membership = selectors.memberships_of_tenant(tenant_id=request.tenant.pk).filter(pk=membership_id).first()
        if membership is None:
            raise NotFound(f"No member {membership_id} in this tenant.")
        return membership

    @extend_schema(request=MemberRoleInput, responses=MemberOutput, operation_id="members_update")
    def patch(self, request, membership_id: int):
        data = validated(self.MemberRoleInput, request.data)
        membership = self._membership(request, membership_id)
        services.membership_change_role(membership=membership, role=data["role"], acting_role=request.user.role)
        return Response(MemberOutput(membership).data)

    @extend_schema(responses={204: None}, operation_id="members_destroy")
    def delete(self, request, membership_id: int):
        membership = self._membership(request, membership_id)
        services.membership_remove(membership=membership, acting_role=request.user.role)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationOutput(serializers.ModelSerializer):
    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "created_at", "expires_at"]


class InvitationListCreateApi(TenantAPIView):
    read_role = Membership.Role.ADMIN
    write_role = Membership.Role.ADMIN

    class InvitationInput(StrictSerializer):
        email = serializers.EmailField()
        role = serializers.ChoiceField(choices=[Membership.Role.ADMIN, Membership.Role.MEMBER, Membership.Role.VIEWER],
                                       default=Membership.Role.MEMBER)

    class InvitationCreated(InvitationOutput):
        token = serializers.CharField(read_only=True)

        class Meta(InvitationOutput.Meta):
            fields = InvitationOutput.Meta.fields + ["token"]

    @extend_schema(responses=InvitationOutput(many=True), operation_id="invitations_list")
    def get(self, request):
        return Response(InvitationOutput(selectors.invitations_of_tenant(tenant_id=request.tenant.pk), many=True).data)

    @extend_schema(request=InvitationInput, responses={201: InvitationCreated}, operation_id="invitations_create")
    def post(self, request):
        data = validated(self.InvitationInput, request.data)
        created = services.invitation_create(tenant_id=request.tenant.pk, email=data["email"], role=data["role"],
                                             invited_by=request.user.user)
        body = InvitationOutput(created.invitation).data
        body["token"] = created.token  # shown once
        return Response(body, status=status.HTTP_201_CREATED)


class InvitationAcceptApi(TenantAPIView):
    """Accept an invitation with its token; a new account sets its password here."""

    authentication_classes = []
    permission_classes = [AllowAny]

    class InvitationAcceptInput(StrictSerializer):
        token = serializers.CharField(max_length=200)
        password = serializers.CharField(min_length=10, max_length=200, required=False,
                                         help_text="Needed when the invited address has no account yet.")

    @extend_schema(request=InvitationAcceptInput, responses={201: MemberOutput}, auth=[], operation_id="invitations_accept")
    def post(self, request):
        data = validated(self.InvitationAcceptInput, request.data)
        membership = services.invitation_accept(tenant_id=request.tenant.pk, token=data["token"],
                                                password=data.get("password"))
        return Response(MemberOutput(membership).data, status=status.HTTP_201_CREATED)


class ApiKeyOutput(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at"]


class ApiKeyListCreateApi(TenantAPIView):
    read_role = Membership.Role.ADMIN
    write_role = Membership.Role.ADMIN

    class ApiKeyInput(StrictSerializer):
        name = serializers.CharField(max_length=100)
        scopes = serializers.ListField(child=serializers.ChoiceField(choices=ApiKey.Scope.choices), allow_empty=False,
                                       max_length=3)

    class ApiKeyCreated(ApiKeyOutput):
        key = serializers.CharField(read_only=True)

        class Meta(ApiKeyOutput.Meta):
            fields = ApiKeyOutput.Meta.fields + ["key"]

    @extend_schema(responses=ApiKeyOutput(many=True), operation_id="api_keys_list")
    def get(self, request):
        return Response(ApiKeyOutput(selectors.api_keys_of_tenant(tenant_id=request.tenant.pk), many=True).data)

    @extend_schema(request=ApiKeyInput, responses={201: ApiKeyCreated}, operation_id="api_keys_create")
    def post(self, request):
        data = validated(self.ApiKeyInput, request.data)
        created = api_keys.api_key_issue(tenant=request.tenant, name=data["name"], scopes=data["scopes"],
                                         created_by=request.user.user)
        body = ApiKeyOutput(created.api_key).data
        body["key"] = created.key  # shown once; only its hash is stored
        return Response(body, status=status.HTTP_201_CREATED)


class ApiKeyDetailApi(TenantAPIView):
    read_role = Membership.Role.ADMIN
    write_role = Membership.Role.ADMIN

    @extend_schema(responses={204: None}, operation_id="api_keys_revoke")
    def delete(self, request, api_key_id: int):
        api_key = selectors.api_keys_of_tenant(tenant_id=request.tenant.pk).filter(pk=api_key_id).first()
        if api_key is None:
            raise NotFound(f"No API key {api_key_id} in this tenant.")
        api_keys.api_key_withdraw(api_key=api_key)
        return Response(status=status.HTTP_204_NO_CONTENT)
