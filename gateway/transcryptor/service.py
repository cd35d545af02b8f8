"""The TranscryptorService servicer: parse, call :mod:`.conversion`, answer."""

from __future__ import annotations

from typing import Any

import grpc
from schakel.v1 import transcryptor_pb2, transcryptor_pb2_grpc

from gateway.rpc.auth import current_identity
from gateway.transcryptor import conversion
from gateway.transcryptor.conversion import TranscryptorParts

Context = grpc.aio.ServicerContext[Any, Any]


class TranscryptorService(transcryptor_pb2_grpc.TranscryptorServiceServicer):
    """One link of the chain; refusals are raised and answered by the interceptor."""

    def __init__(self, parts: TranscryptorParts) -> None:
        self.parts = parts

    async def Transcrypt(  # noqa: N802 - gRPC method name
        self, request: transcryptor_pb2.TranscryptRequest, context: Context
    ) -> transcryptor_pb2.TranscryptResponse:
        """Convert a batch with this transcryptor's factors."""
        return await conversion.transcrypt(self.parts, current_identity(), request)

    async def Enrol(  # noqa: N802 - gRPC method name
        self, request: transcryptor_pb2.EnrolRequest, context: Context
    ) -> transcryptor_pb2.EnrolResponse:
        """The caller's domain factor."""
        return await conversion.enrol(self.parts, current_identity())
