"""What the server tells apps about its authorization: the SMART configuration document
(``/fhir/.well-known/smart-configuration``, SMART App Launch 2.0 §2.0.8), the OpenID Connect
discovery document and the CapabilityStatement's ``rest.security`` (SMART App Launch 2.0
§2.0.8 "Conformance": the SMART-on-FHIR service coding and the oauth-uris extension).
"""

from __future__ import annotations

from typing import Any

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
# SMART defines no capability code for granular scopes (``permission-v2`` is the v2 syntax;
# SMART App Launch 2.0 §3.0.2 leaves the required search parameters open): the granular scopes
# below say which constraints this server applies, and docs/security.md names every one.
CAPABILITIES = [
    "launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
    "client-confidential-asymmetric", "context-ehr-patient", "context-ehr-encounter",
    "context-standalone-patient", "context-banner", "context-style", "permission-offline",
    "permission-online", "permission-patient", "permission-user", "permission-v1",
    "permission-v2", "sso-openid-connect", "authorize-post"]
SCOPES = [
    "openid", "fhirUser", "profile", "launch", "launch/patient", "offline_access",
    "online_access", "patient/*.rs", "patient/*.cruds", "user/*.rs", "user/*.cruds",
    "system/*.rs", "system/*.cruds", "patient/*.read", "user/*.read", "system/*.read"]
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
GRANULAR = [  # security.granular: any token parameter of the type; these are the usual ones
    f"{context}/{rtype}.rs?category={system}|{code}"
    for context in ("patient", "user", "system")
    for rtype, system, codes in (
        ("Observation", OBSERVATION_CATEGORY, ("laboratory", "vital-signs", "social-history",
                                               "survey", "imaging", "exam", "procedure",
                                               "therapy", "activity")),
        ("Condition", CONDITION_CATEGORY, ("problem-list-item", "encounter-diagnosis")))
    for code in codes]


def endpoints(base: str) -> dict[str, str]:
    """The OAuth endpoints of the server at ``base`` (scheme, host and port)."""
    return {"authorize": f"{base}/auth/authorize", "token": f"{base}/auth/token",
            "revoke": f"{base}/auth/revoke", "introspect": f"{base}/auth/introspect",
            "jwks": f"{base}/auth/jwks"}


def smart_configuration(base: str, fhir_base: str) -> dict[str, Any]:
    """The SMART configuration document (SMART App Launch 2.0 §2.0.8, Backend Services)."""
    at = endpoints(base)
    return {
        "issuer": fhir_base,
        "jwks_uri": at["jwks"],
        "authorization_endpoint": at["authorize"],
        "token_endpoint": at["token"],
        "introspection_endpoint": at["introspect"],
        "revocation_endpoint": at["revoke"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic",
                                                  "client_secret_post", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384", "RS256"],
        "scopes_supported": SCOPES + GRANULAR,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
    }


def openid_configuration(base: str, fhir_base: str) -> dict[str, Any]:
    """OpenID Connect Discovery 1.0 §3 for the ID tokens issued to apps (issuer: the FHIR
    base URL, so the document lives at ``{fhir_base}/.well-known/openid-configuration``)."""
    at = endpoints(base)
    return {
        "issuer": fhir_base, "jwks_uri": at["jwks"], "authorization_endpoint": at["authorize"],
        "token_endpoint": at["token"], "response_types_supported": ["code"],
        "subject_types_supported": ["public"], "id_token_signing_alg_values_supported":
            ["RS256"], "scopes_supported": ["openid", "fhirUser", "profile"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic",
                                                  "client_secret_post", "none"]}


def rest_security(base: str) -> dict[str, Any]:
    """CapabilityStatement.rest.security: SMART on FHIR, with the oauth-uris extension."""
    at = endpoints(base)
    return {
        "extension": [{"url": OAUTH_URIS, "extension": [
            {"url": "authorize", "valueUri": at["authorize"]},
            {"url": "token", "valueUri": at["token"]},
            {"url": "revoke", "valueUri": at["revoke"]},
            {"url": "introspect", "valueUri": at["introspect"]}]}],
        "service": [{"coding": [{"system": SERVICE, "code": "SMART-on-FHIR",
                                 "display": "SMART-on-FHIR"}],
                     "text": "OAuth 2.0 per SMART App Launch 2.0 and Backend Services"}],
        "description": "Bearer tokens from the authorization code (PKCE S256), refresh token "
                       "and client credentials grants; see /.well-known/smart-configuration.",
    }
