"""PS/RTP media: codecs, ingest, relay, recording, playback.

This package never imports :mod:`gb28181`; the platform drives it through a
small control interface that also works across processes.
"""

from media.control import (
    AddOutput,
    Close,
    Command,
    Connect,
    ControlClient,
    ControlError,
    ControlServer,
    LocalControl,
    OpenReceiver,
    Rekey,
    RemoveOutput,
    Snapshot,
    Stats,
    decode_command,
    encode_command,
)
from media.frame_assembler import AssembledFrame, FrameAssembler
from media.nal import inspect_video, is_keyframe
from media.ports import PortPool, PortPoolError, SsrcTable
from media.ps import Codec, PsError, PsFrame, StreamKind
from media.ps_demux import PsDemuxer, parse_psm
from media.ps_mux import PsMuxer
from media.recorder import Recorder, RecorderError, SegmentWriter
from media.relay import (
    DropReason,
    KeyframeSent,
    OutputClosed,
    OutputSpec,
    RelayEvent,
    RelaySession,
    SsrcChanged,
    StreamStarted,
    StreamTimedOut,
)
from media.rfc4571 import Rfc4571Error, Rfc4571Splitter
from media.rfc4571 import frame as rfc4571_frame
from media.rtp import (
    RtpError,
    RtpExtension,
    RtpHeader,
    RtpPacket,
    RtpPacketizer,
    peek_ssrc_seq_ts,
    seq_add,
    seq_diff,
    seq_gt,
    ts_add,
    ts_diff,
    ts_gt,
)
from media.segments import SegmentFrame, SegmentInfo, read_frames, scan_segment
from media.worker import (
    Mode,
    RelayWorker,
    WorkerConfig,
    WorkerError,
    gro_supported,
    gso_supported,
)

from .snapshot import DEFAULT_QUALITY, SnapshotError, find_keyframe, keyframe_jpeg

__all__ = [
    "DEFAULT_QUALITY",
    "AddOutput",
    "AssembledFrame",
    "Close",
    "Codec",
    "Command",
    "Connect",
    "ControlClient",
    "ControlError",
    "ControlServer",
    "DropReason",
    "FrameAssembler",
    "KeyframeSent",
    "LocalControl",
    "Mode",
    "OpenReceiver",
    "OutputClosed",
    "OutputSpec",
    "PortPool",
    "PortPoolError",
    "PsDemuxer",
    "PsError",
    "PsFrame",
    "PsMuxer",
    "Recorder",
    "RecorderError",
    "Rekey",
    "RelayEvent",
    "RelaySession",
    "RelayWorker",
    "RemoveOutput",
    "Rfc4571Error",
    "Rfc4571Splitter",
    "RtpError",
    "RtpExtension",
    "RtpHeader",
    "RtpPacket",
    "RtpPacketizer",
    "SegmentFrame",
    "SegmentInfo",
    "SegmentWriter",
    "Snapshot",
    "SnapshotError",
    "SsrcChanged",
    "SsrcTable",
    "Stats",
    "StreamKind",
    "StreamStarted",
    "StreamTimedOut",
    "WorkerConfig",
    "WorkerError",
    "decode_command",
    "encode_command",
    "find_keyframe",
    "gro_supported",
    "gso_supported",
    "inspect_video",
    "is_keyframe",
    "keyframe_jpeg",
    "parse_psm",
    "peek_ssrc_seq_ts",
    "read_frames",
    "rfc4571_frame",
    "scan_segment",
    "seq_add",
    "seq_diff",
    "seq_gt",
    "ts_add",
    "ts_diff",
    "ts_gt",
]
