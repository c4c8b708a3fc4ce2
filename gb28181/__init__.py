"""GB/T 28181 platform: SIP signalling server and PS/RTP media gateway."""

__version__ = "0.1.0"

__all__ = ["__version__"]
