"""``dtt narrate TWIN.json``: a grounded summary of the twin (template or MedGemma)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("narrate", help="write a grounded narrative from a twin summary JSON")
    parser.add_argument("twin", help="twin summary JSON (schema: docs/TWIN_SUMMARY.md)")
    parser.add_argument("--backend", default="template",
                        help="template (default), medgemma-4b, medgemma-27b, or auto (follow the hardware profile)")
    parser.add_argument("--model", "--model-dir", dest="model", default=None,
                        help="catalog id, hub id or local folder of the MedGemma weights")
    parser.add_argument("--max-new-tokens", type=int, default=400)
    parser.add_argument("--offline", action="store_true", help="never download weights")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from DTTLib.cli.output import print_json  # noqa: PLC0415
    from DTTLib.narrative import load_facts, narrate  # noqa: PLC0415

    facts = load_facts(args.twin)
    generator, reason = None, "deterministic template"
    if args.backend != "template":
        from DTTLib.hardware import choose_profile, detect_hardware  # noqa: PLC0415
        from DTTLib.models import ModelManager  # noqa: PLC0415
        from DTTLib.narrative.backends import choose_backend, medgemma_generator  # noqa: PLC0415

        info = detect_hardware()
        profile = choose_profile(info)
        backend, reason = choose_backend(args.backend, profile)
        if backend != "template":
            manager = ModelManager(info, profile.settings)
            generator = medgemma_generator(manager, args.model or backend, args.max_new_tokens,
                                           allow_download=not args.offline, name=backend)
    result = narrate(facts, generator)
    if args.json:
        print_json({**result.to_dict(), "backend_reason": reason})
    else:
        print(result.text)
        for flag in result.flags:
            print(f"flag: {flag}")
    return 0
