"""A real RTSP server playing H.264 files in a loop, like an IP camera's streams.

GStreamer's RTSP server (Debian ``gir1.2-gst-rtsp-server-1.0``) serves each
``--mount /path=FILE.h264`` over RTP/RTSP. The file is an Annex-B H.264
elementary stream with access unit delimiters (x264 ``aud=1``); this process
cuts it into access units and pushes one every 1/fps seconds, looping for
ever, so a client sees a live camera with steady timestamps. It runs as a
separate process with the SYSTEM python3 (which has ``gi``; the project's
virtualenv does not), so a test can SIGKILL or SIGSTOP it for real::

    /usr/bin/python3 simulator/rtsp_server.py --port 8554 --fps 15 \\
        --mount /main=main.h264 --mount /sub=sub.h264

It prints ``READY <port>`` on stdout once it listens. This file imports
nothing from shaobing: it runs outside the virtualenv.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

AUD = b"\x00\x00\x00\x01\x09"
CAPS = "video/x-h264,stream-format=byte-stream,alignment=au"


def access_units(data: bytes) -> list[bytes]:
    """Split at the access unit delimiters; a file without them is refused by name."""
    parts = data.split(AUD)
    units = [AUD + p for p in parts[1:] if p]
    if not units:
        raise ValueError("no access unit delimiters: encode with -x264-params aud=1")
    return units


class Feeder:
    """Pushes the access units of one file into one media's appsrc at the camera rate."""

    def __init__(self, units: list[bytes], fps: int, appsrc: Gst.Element) -> None:
        self.units = units
        self.appsrc = appsrc
        self.index = 0
        self.duration = Gst.SECOND // fps
        self.source_id = GLib.timeout_add(max(1, round(1000 / fps)), self.push)

    def push(self) -> bool:
        unit = self.units[self.index % len(self.units)]
        buf = Gst.Buffer.new_wrapped(unit)
        buf.duration = self.duration
        self.index += 1
        return self.appsrc.emit("push-buffer", buf) in (Gst.FlowReturn.OK, Gst.FlowReturn.FLUSHING)

    def stop(self, *_args: object) -> None:
        if self.source_id:
            GLib.source_remove(self.source_id)
            self.source_id = 0


class LoopingFactory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, units: list[bytes], fps: int) -> None:
        super().__init__()
        self.units = units
        self.fps = fps
        # appsrc stamps each buffer with the running time it is pushed at.
        self.set_launch(
            f'( appsrc name=src is-live=true do-timestamp=true format=time caps="{CAPS}" '
            "! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )
        # Every client shares one live stream, as from a camera.
        self.set_shared(True)
        self.connect("media-configure", self._configure)

    def _configure(self, _factory: object, media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_child_by_name("src")
        feeder = Feeder(self.units, self.fps, appsrc)
        media.connect("unprepared", feeder.stop)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--fps", type=int, default=15, help="frame rate of the files")
    p.add_argument("--mount", action="append", required=True, metavar="/PATH=FILE")
    args = p.parse_args(argv)
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for spec in args.mount:
        path, sep, file = spec.partition("=")
        if not sep or not path.startswith("/"):
            p.error(f"--mount {spec!r}: expected /PATH=FILE")
        try:
            units = access_units(Path(file).read_bytes())
        except (OSError, ValueError) as exc:
            p.error(f"--mount {spec!r}: {exc}")
        mounts.add_factory(path, LoopingFactory(units, args.fps))
    if server.attach(None) == 0:
        print(f"cannot listen on {args.address}:{args.port}", file=sys.stderr)
        return 1
    print(f"READY {args.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
