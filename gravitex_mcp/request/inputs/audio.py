"""Audio file types by their magic bytes (for ``audio_url`` given as a local path)."""

from __future__ import annotations

from typing import Final

AUDIO_TYPES_TEXT: Final = "MP3, WAV, M4A/AAC, OGG or FLAC"


def sniff_audio_type(data: bytes) -> str | None:
    """The MIME type of ``data`` if it starts like an accepted audio file, else ``None``."""
    if data.startswith(b"ID3") and len(data) >= 10:
        return "audio/mpeg"
    # An MPEG audio frame header: 11 set sync bits, a valid layer (not 00).
    if len(data) >= 4 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0 and data[1] & 0x06:
        return "audio/mpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data.startswith(b"fLaC"):
        return "audio/flac"
    if data.startswith(b"OggS"):
        return "audio/ogg"
    if len(data) >= 12 and data[4:8] == b"ftyp" and data[8:11] in (b"M4A", b"M4B", b"mp4"):
        return "audio/mp4"
    return None
