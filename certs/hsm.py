"""Private keys kept in a PKCS#11 token (an HSM; SoftHSM2 in the tests).

A key is named by a PKCS#11 URI (RFC 7512), for example::

    pkcs11:token=schakel-ca;object=ca?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/schakel/hsm.pin

``token`` is the token label, ``object`` the key's label; ``module-path``
names the vendor's PKCS#11 library and ``pin-source`` a file holding the
user PIN (``pin-value`` works too, but puts the PIN in the configuration).

The keys returned here are objects of cryptography's own key classes
(:class:`~cryptography.hazmat.primitives.asymmetric.ec.EllipticCurvePrivateKey`
for the CA, :class:`~cryptography.hazmat.primitives.asymmetric.ed25519.Ed25519PrivateKey`
for the audit log's checkpoint key), so certificate, CRL and checkpoint
signing use them unchanged; every signature is made inside the token and
the private key never leaves it.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pkcs11
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, utils
from cryptography.utils import Buffer
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error, UserAlreadyLoggedIn
from pkcs11.util.ec import encode_named_curve_parameters

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Library  # noqa: N812 - a class, named as one

SCHEME = "pkcs11:"
_P256_OID = "1.2.840.10045.3.1.7"
_ED25519_OID = "1.3.101.112"


class HsmError(ValueError):
    """A PKCS#11 URI, token or key is unusable; the message says which and why."""


def is_pkcs11_uri(text: str) -> bool:
    """True when ``text`` is a PKCS#11 URI rather than a file path."""
    return text.startswith(SCHEME)


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of a PKCS#11 URI that name one key in one token."""

    token: str
    object: str
    module_path: Path
    pin_source: Path | None = None
    pin_value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Pkcs11Uri:
        """Parse ``pkcs11:token=..;object=..?module-path=..&pin-source=..``."""
        if not is_pkcs11_uri(text):
            raise HsmError(f"{text!r} is not a PKCS#11 URI (pkcs11:token=...;object=...)")
        path, _, query = text[len(SCHEME) :].partition("?")
        attrs: dict[str, str] = {}
        for part in filter(None, path.split(";")):
            name, sep, value = part.partition("=")
            if not sep:
                raise HsmError(f"PKCS#11 URI attribute {name!r} has no value")
            attrs[name] = urllib.parse.unquote(value)
        params = {k: v for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True)}
        for wanted in ("token", "object"):
            if not attrs.get(wanted):
                raise HsmError(f"the PKCS#11 URI names no {wanted}")
        module = params.get("module-path")
        if not module:
            raise HsmError("the PKCS#11 URI names no module-path (the token's PKCS#11 library)")
        pin_source = params.get("pin-source")
        pin_value = params.get("pin-value")
        if pin_source is None and pin_value is None:
            raise HsmError("the PKCS#11 URI gives neither pin-source (a PIN file) nor pin-value")
        return cls(
            token=attrs["token"],
            object=attrs["object"],
            module_path=Path(module),
            pin_source=Path(pin_source.removeprefix("file:")) if pin_source else None,
            pin_value=pin_value,
        )

    def pin(self) -> str:
        """The user PIN, from the PIN file when one is named."""
        if self.pin_source is None:
            return self.pin_value or ""
        try:
            return self.pin_source.read_text(encoding="utf-8").split("\n", 1)[0].rstrip("\r")
        except OSError as exc:
            raise HsmError(f"PIN file {self.pin_source}: cannot read: {exc.strerror}") from exc

    def __str__(self) -> str:
        """The URI without the PIN value, for messages."""
        return f"{SCHEME}token={self.token};object={self.object}"


def _library(path: Path) -> Library:
    # pkcs11.lib keeps one object per module: PKCS#11 initialises a module once per process.
    try:
        return pkcs11.lib(str(path))
    except (PKCS11Error, OSError, RuntimeError) as exc:
        raise HsmError(f"cannot load the PKCS#11 module {path}: {exc!r}") from exc


def _open(uri: Pkcs11Uri, *, rw: bool = False) -> pkcs11.Session:
    try:
        token = _library(uri.module_path).get_token(token_label=uri.token)
        try:
            session: pkcs11.Session = token.open(user_pin=uri.pin(), rw=rw)
        except UserAlreadyLoggedIn:
            # PKCS#11 logs in per application: another open session already did.
            session = token.open(rw=rw)
        return session
    except PKCS11Error as exc:
        raise HsmError(f"{uri}: cannot open the token: {type(exc).__name__}") from exc


def _octets(value: bytes) -> bytes:
    """The content of a DER OCTET STRING (how tokens give CKA_EC_POINT), else ``value``."""
    if len(value) >= 2 and value[0] == 0x04 and value[1] == len(value) - 2:
        return value[2:]
    return value


class _TokenKey:
    """A private key object in an open session; one signature at a time per session."""

    def __init__(self, uri: Pkcs11Uri, session: pkcs11.Session, key: Any) -> None:
        self.uri = uri
        self._session = session
        self._key = key
        self._lock = threading.Lock()

    def sign(self, data: bytes, mechanism: Mechanism) -> bytes:
        with self._lock:
            try:
                signature: bytes = self._key.sign(data, mechanism=mechanism)
            except PKCS11Error as exc:
                raise HsmError(f"{self.uri}: the token refused to sign: {exc!r}") from exc
        return signature

    def close(self) -> None:
        with self._lock:
            self._session.close()


def _refuse(what: str) -> NoReturn:
    raise HsmError(f"a key kept in a PKCS#11 token cannot {what}")


class HsmEcKey(ec.EllipticCurvePrivateKey):
    """An ECDSA P-256 key in a token, usable wherever cryptography takes a private key."""

    def __init__(self, token_key: _TokenKey, public: ec.EllipticCurvePublicKey) -> None:
        self._token = token_key
        self._public = public

    @property
    def curve(self) -> ec.EllipticCurve:
        """The key's curve (P-256)."""
        return self._public.curve

    @property
    def key_size(self) -> int:
        """Bit length of the curve's order."""
        return self._public.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half, read from the token."""
        return self._public

    def sign(self, data: Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        """An ECDSA signature (DER) over ``data``, made by the token."""
        if not isinstance(signature_algorithm, ec.ECDSA):
            _refuse("sign with anything but ECDSA")
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, utils.Prehashed):
            digest = bytes(data)
        else:
            hasher = hashes.Hash(algorithm)
            hasher.update(data)
            digest = hasher.finalize()
        raw = self._token.sign(digest, Mechanism.ECDSA)
        half = len(raw) // 2
        return utils.encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        """Not offered: the CA key only signs."""
        _refuse("do key agreement")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        """Not offered: the private key never leaves the token."""
        _refuse("export its private numbers")

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        """Not offered: the private key never leaves the token."""
        _refuse("be exported")

    def __copy__(self) -> HsmEcKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> HsmEcKey:
        return self


class HsmEd25519Key(ed25519.Ed25519PrivateKey):
    """An Ed25519 key in a token: the audit log's checkpoint signing key."""

    def __init__(self, token_key: _TokenKey, public: ed25519.Ed25519PublicKey) -> None:
        self._token = token_key
        self._public = public

    def public_key(self) -> ed25519.Ed25519PublicKey:
        """The public half, read from the token."""
        return self._public

    def sign(self, data: Buffer) -> bytes:
        """A pure Ed25519 signature over ``data``, made by the token."""
        return self._token.sign(bytes(data), Mechanism.EDDSA)

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        """Not offered: the private key never leaves the token."""
        _refuse("be exported")

    def private_bytes_raw(self) -> bytes:
        """Not offered: the private key never leaves the token."""
        _refuse("be exported")

    def __copy__(self) -> HsmEd25519Key:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> HsmEd25519Key:
        return self


def _ec_public(point: bytes) -> ec.EllipticCurvePublicKey:
    for candidate in (_octets(point), point):
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), candidate)
        except ValueError:
            continue
    raise HsmError("the token's EC point is not a P-256 point")


def _ed25519_public(point: bytes) -> ed25519.Ed25519PublicKey:
    raw = _octets(point)
    if len(raw) != 32:
        raise HsmError("the token's EC point is not an Ed25519 public key")
    return ed25519.Ed25519PublicKey.from_public_bytes(raw)


def _find(uri: Pkcs11Uri, key_type: KeyType, *, rw: bool = False) -> tuple[pkcs11.Session, Any]:
    session = _open(uri, rw=rw)
    try:
        private = session.get_key(ObjectClass.PRIVATE_KEY, key_type, label=uri.object)
        public = session.get_key(ObjectClass.PUBLIC_KEY, key_type, label=uri.object)
    except PKCS11Error as exc:
        session.close()
        raise HsmError(f"{uri}: no {key_type.name} key pair: {type(exc).__name__}") from exc
    return session, (private, public[Attribute.EC_POINT])


def _load(uri_text: str, key_type: KeyType, build: Callable[[_TokenKey, bytes], Any]) -> Any:
    uri = Pkcs11Uri.parse(uri_text)
    session, (private, point) = _find(uri, key_type)
    try:
        return build(_TokenKey(uri, session, private), point)
    except HsmError:
        session.close()
        raise


def load_ec_key(uri: str) -> HsmEcKey:
    """The ECDSA P-256 key that ``uri`` names."""
    key: HsmEcKey = _load(uri, KeyType.EC, lambda tk, point: HsmEcKey(tk, _ec_public(point)))
    return key


def load_ed25519_key(uri: str) -> HsmEd25519Key:
    """The Ed25519 key that ``uri`` names."""
    key: HsmEd25519Key = _load(
        uri, KeyType.EC_EDWARDS, lambda tk, point: HsmEd25519Key(tk, _ed25519_public(point))
    )
    return key


def _generate(uri_text: str, key_type: KeyType, curve_oid: str, mechanism: Mechanism) -> None:
    uri = Pkcs11Uri.parse(uri_text)
    with _open(uri, rw=True) as session:
        if list(session.get_objects({Attribute.LABEL: uri.object})):
            raise HsmError(f"{uri}: the token already holds an object with this label")
        params = session.create_domain_parameters(
            key_type, {Attribute.EC_PARAMS: encode_named_curve_parameters(curve_oid)}, local=True
        )
        try:
            params.generate_keypair(
                store=True,
                label=uri.object,
                mechanism=mechanism,
                private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
            )
        except PKCS11Error as exc:
            raise HsmError(f"{uri}: the token cannot make the key: {exc!r}") from exc


def generate_ec_key(uri: str) -> HsmEcKey:
    """Make a non-extractable ECDSA P-256 key pair in the token and return it."""
    _generate(uri, KeyType.EC, _P256_OID, Mechanism.EC_KEY_PAIR_GEN)
    return load_ec_key(uri)


def generate_ed25519_key(uri: str) -> HsmEd25519Key:
    """Make a non-extractable Ed25519 key pair in the token and return it."""
    _generate(uri, KeyType.EC_EDWARDS, _ED25519_OID, Mechanism.EC_EDWARDS_KEY_PAIR_GEN)
    return load_ed25519_key(uri)
