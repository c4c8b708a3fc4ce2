"""PS/RTP media: codecs, ingest, relay, recording, playback.

This package never imports :mod:`gb28181`; the platform drives it through a
small control interface that also works across processes.
"""
