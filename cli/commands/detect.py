"""``shaobing detect``: run a model on pictures from the site, one JSON line per image."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2

from shaobing.agent.detection.detector import Detector
from shaobing.agent.detection.runtime import ModelError, threads_arg
from shaobing.agent.detection.snapshot import draw_detections


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "detect",
        help="run a detector on images and print one JSON object per image",
        description="Check a model on pictures from the site: one JSON object per image "
        "on stdout with label, score and pixel box of each detection above the threshold.",
    )
    p.add_argument(
        "--model", required=True, metavar="MODEL", help="path to a .tflite file or a manifest name"
    )
    p.add_argument(
        "--labels", type=Path, metavar="FILE", help="labels file, one label a line (index = class)"
    )
    p.add_argument("--threshold", type=float, default=0.5, help="minimum score (default 0.5)")
    p.add_argument(
        "--threads",
        type=threads_arg,
        default="auto",
        help="interpreter threads (default auto: one less than the cores, as the agent)",
    )
    p.add_argument(
        "--runtime",
        choices=["auto", "ai-edge-litert", "tflite-runtime"],
        default="auto",
        help="TFLite runtime (default: ai-edge-litert if installed)",
    )
    p.add_argument("--annotate", type=Path, metavar="OUT_DIR", help="write annotated JPEGs here")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="JPEG/PNG/BMP files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        detector = Detector(
            args.model,
            labels=args.labels,
            runtime=args.runtime,
            num_threads=args.threads,
            score_threshold=args.threshold,
        )
    except ModelError as exc:
        print(f"shaobing detect: {exc}", file=sys.stderr)
        return 2
    if args.annotate:
        args.annotate.mkdir(parents=True, exist_ok=True)
    status = 0
    for image_path in args.images:
        frame = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED) if image_path.is_file() else None
        if frame is None:
            print(f"shaobing detect: cannot read image {image_path}", file=sys.stderr)
            status = 1
            continue
        if frame.ndim == 3 and frame.shape[2] == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        result = detector.detect(frame)
        record = {
            "image": str(image_path),
            "width": result.frame_size[0],
            "height": result.frame_size[1],
            "ir": result.ir,
            "detections": [d.to_json() for d in result.detections],
        }
        if args.annotate:
            out = args.annotate / (image_path.stem + ".jpg")
            cv2.imwrite(str(out), draw_detections(frame, result.detections))
            record["annotated"] = str(out)
        print(json.dumps(record, ensure_ascii=False), flush=True)
    return status
