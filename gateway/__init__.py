"""The Schakel node."""

from gateway import grpc_env

# Before any gateway module imports grpc: grpc core reads its environment once.
grpc_env.apply()
