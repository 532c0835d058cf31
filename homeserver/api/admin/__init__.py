"""The admin API, at Synapse's paths under /_synapse/admin (served by the `client` resource).

Every endpoint but shared-secret registration needs the access token of a
server admin (403 M_FORBIDDEN otherwise); see homeserver.handlers.admin_users.
"""
