"""Which media formats `reencode` lets ffmpeg read and write, and the ffmpeg options that enforce it.

Input: plain containers only, each a single self-contained file. Never a format that names other files or
URLs and makes ffmpeg open them — HLS and DASH playlists, concat/ffconcat lists, `image2` (file-name patterns
and globbing), `data`/`subfile`, tee — because a tenant's upload could then have the miner read a local file
and hand it back re-encoded. ffmpeg probes the content, not the name (an HLS playlist named `.mp4` is still
HLS), and `-format_whitelist` refuses whatever the probe finds outside this list. `-protocol_whitelist file`
keeps every open to local files; the sandbox's mount namespace leaves only the job's own folder among them.

Output: the muxers of ordinary files (no `hls`, `segment`, `tee`, `image2` patterns or network muxers), each
written to one fixed path in the job folder.
"""

from __future__ import annotations

from collections.abc import Sequence

# Demuxer names as ffmpeg names them (`ffmpeg -demuxers`); one entry matches a demuxer whose name lists it
# ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm").
INPUT_FORMATS = (
    "mov",
    "mp4",
    "m4a",
    "3gp",
    "matroska",
    "webm",
    "avi",
    "flv",
    "mpeg",
    "mpegts",
    "wav",
    "aiff",
    "mp3",
    "flac",
    "ogg",
    "aac",
    "gif",
    "png_pipe",
    "jpeg_pipe",
    "webp_pipe",
)
# Muxer name → the output file's extension.
OUTPUT_FORMATS = {
    "mp4": "mp4",
    "mov": "mov",
    "ipod": "m4a",
    "3gp": "3gp",
    "matroska": "mkv",
    "webm": "webm",
    "avi": "avi",
    "flv": "flv",
    "mpegts": "ts",
    "ogg": "ogg",
    "opus": "opus",
    "wav": "wav",
    "aiff": "aiff",
    "mp3": "mp3",
    "flac": "flac",
    "adts": "aac",
    "gif": "gif",
    "image2": "png",  # one still: the first frame (the output path has no pattern)
}
PROTOCOLS = "file"


def input_options(formats: Sequence[str] = INPUT_FORMATS) -> list[str]:
    """Options placed before `-i` (ffmpeg) or the input (ffprobe)."""
    return ["-protocol_whitelist", PROTOCOLS, "-format_whitelist", ",".join(formats)]


def output_options(output_format: str) -> list[str]:
    """Options placed before the output file: its muxer, and local files only."""
    still = ["-frames:v", "1"] if output_format == "image2" else []
    return [*still, "-f", output_format, "-protocol_whitelist", PROTOCOLS]


def refused_input(stderr: str) -> bool:
    """ffmpeg's own words when a whitelist stopped it (a playlist, a list, a URL of another protocol)."""
    return "not on whitelist" in stderr
