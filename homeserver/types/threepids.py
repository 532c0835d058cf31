"""Third-party identifiers: checking and canonicalising them, as Synapse stores them.

Spec: client-server API "Adding Account Administrative Contact Information"
(`client_secret`: 1 to 255 characters of `[0-9a-zA-Z.=_-]`), "Identifier
types" (m.id.thirdparty, m.id.phone) and the Identity Service API's msisdn
form: a phone number in international format, digits only.

Pure: raises `InvalidThreepid` (a ValueError) with a message for the client.
"""

from __future__ import annotations

import re

import phonenumbers

EMAIL = "email"
MSISDN = "msisdn"
MEDIA = (EMAIL, MSISDN)

_CLIENT_SECRET_RE = re.compile(r"[0-9a-zA-Z.=_-]{1,255}")
# RFC 3696 (errata 1690): an address is at most 254 characters in a path; as
# Synapse does, anything past 320 is refused outright.
MAX_EMAIL_LENGTH = 320


class InvalidThreepid(ValueError):
    """A client secret, email address or phone number that cannot be used."""


def is_valid_client_secret(client_secret: object) -> bool:
    return isinstance(client_secret, str) and _CLIENT_SECRET_RE.fullmatch(client_secret) is not None


def canonicalise_email(address: str) -> str:
    """The form addresses are stored and compared in: trimmed, local part casefolded,
    domain lower-cased (as Synapse, so an address matches however it is typed)."""
    address = address.strip()
    parts = address.split("@")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise InvalidThreepid("Unable to parse email address")
    if any(c.isspace() or c in "<>\"(),;:\\[]" or ord(c) < 0x20 for c in address):
        raise InvalidThreepid("Unable to parse email address")
    canonical = parts[0].casefold() + "@" + parts[1].lower()
    if len(canonical) > MAX_EMAIL_LENGTH:
        raise InvalidThreepid("Email address is too long")
    return canonical


def phone_number_to_msisdn(country: str, number: str) -> str:
    """The msisdn (international number, digits only) of a number dialled in `country`.

    `country` is an ISO 3166-1 alpha-2 code; a number starting with `+` is
    taken as international whatever the country. Spec: m.id.phone "the
    homeserver is responsible for canonicalising the phone number".
    """
    try:
        parsed = phonenumbers.parse(number, country.upper() or None)
    except phonenumbers.NumberParseException as e:
        raise InvalidThreepid("Unable to parse phone number") from e
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidThreepid("Unable to parse phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)[1:]


def canonicalise_address(medium: str, address: str) -> str:
    """An address of `medium` in stored form (emails canonicalised; msisdns digits only)."""
    if medium == EMAIL:
        return canonicalise_email(address)
    if medium == MSISDN:
        digits = address[1:] if address.startswith("+") else address
        if not digits.isascii() or not digits.isdigit() or len(digits) > 15:
            raise InvalidThreepid("Invalid msisdn")
        return digits
    raise InvalidThreepid(f"Unknown medium {medium!r}")
