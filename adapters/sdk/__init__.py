"""The partner SDK: everything a partner system needs to take part in Schakel.

Connect with :class:`PartnerClient` (mTLS to the partner's own node, deadlines
and retries under a :class:`RetryPolicy`), encrypt identifiers with
:func:`encrypt_subject` and decrypt the node's subjects to the partner's own
pseudonym with :func:`decrypt_subject` and its :class:`DomainKey`. Either
drive the calls yourself, or implement :class:`Adapter` over your data and
let :class:`AdapterRunner` serve the node's tasks. Get the domain key
online from the transcryptors with :func:`enrol_domain`. Failures are
:class:`PartnerRpcError` (the node refused or could not be reached),
:class:`PseudonymError` (an invalid identifier or key), :class:`KeyFileError`
(an unreadable domain key file) and :class:`TraceContextError`.

The names below are the public API; the underscore modules behind them may
change without notice. :mod:`adapters.sdk.tracecontext` is public too: the
W3C trace context the node shares with the SDK.
"""

from adapters.sdk._adapter import Adapter, ContactHandle, DeliveryHandler, SubjectRow
from adapters.sdk._client import PartnerClient, RetryPolicy, new_idempotency_key
from adapters.sdk._enrol import TranscryptorAddress, enrol_domain
from adapters.sdk._errors import PartnerRpcError
from adapters.sdk._runner import AdapterRunner
from adapters.sdk._subjects import decrypt_subject, encrypt_subject
from adapters.sdk.tracecontext import TraceContext, TraceContextError
from policy.pseudonyms import DomainKey, KeyFileError, PseudonymError

__all__ = [
    "Adapter",
    "AdapterRunner",
    "ContactHandle",
    "DeliveryHandler",
    "DomainKey",
    "KeyFileError",
    "PartnerClient",
    "PartnerRpcError",
    "PseudonymError",
    "RetryPolicy",
    "SubjectRow",
    "TraceContext",
    "TraceContextError",
    "TranscryptorAddress",
    "decrypt_subject",
    "encrypt_subject",
    "enrol_domain",
    "new_idempotency_key",
]
