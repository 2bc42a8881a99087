"""Where a process's CPU went, from py-spy's raw samples (`python -m bench --profile`).

py-spy writes one line per distinct stack: frames from the outermost to the innermost,
separated by ";", each "function (file:line)", then the number of samples. Idle frames are
not sampled (`--gil`: only a thread holding the GIL is), so the samples are time running at
py-spy's rate (100 per second here); on a busy machine that includes time waiting for a core,
so read the shares, and the process's CPU seconds from the report's CPU table.
"""

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
OURS = ("services/", "shared/")
# The command line's entry point holds the event loop: a sample whose innermost frame of ours
# is this one is the loop's or a library's own work, not a function of ours that called it.
ENTRY = "services/cli.py"
NOT_OURS = "(event loop, framework and libraries, below no function of ours)"


@dataclass
class Profile:
    """Sample counts of one process: by area of the innermost frame, by our function that
    called into it, and by innermost function."""

    name: str
    samples: int = 0
    areas: Counter[str] = field(default_factory=Counter)
    ours: Counter[str] = field(default_factory=Counter)
    leaves: Counter[str] = field(default_factory=Counter)


def area(file: str) -> str:
    """What a frame's file belongs to: one of our packages, a library, or the standard library."""
    path = file.replace("\\", "/")
    if "site-packages/" in path:
        package = path.split("site-packages/", 1)[1].split("/", 1)[0]
        return package.removesuffix(".py").split(".")[0]
    for ours in OURS:
        if path.startswith(ours) or f"/{ours}" in path:
            tail = path[path.rindex(ours) :].split("/")
            return "/".join(tail[:2]) if ours == "services/" else "shared"
    if "/asyncio/" in path:
        return "asyncio (event loop)"
    return "python (stdlib, interpreter)"


def _ours(file: str) -> bool:
    path = file.replace("\\", "/")
    if "site-packages/" in path or path.endswith(ENTRY):
        return False
    return any(path.startswith(o) or f"/{o}" in path for o in OURS)


def _short(function: str, file: str) -> str:
    path = file.replace("\\", "/")
    for ours in OURS:
        if ours in path and "site-packages/" not in path:
            path = path[path.rindex(ours) :]
            break
    else:
        path = path.rsplit("/", 1)[-1]
    return f"{function} ({path})"


def parse(text: str, name: str) -> Profile:
    """Count the samples of py-spy's raw output by area, by our nearest frame and by leaf."""
    profile = Profile(name)
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [m for f in stack.split(";") if (m := FRAME.match(f))]
        if not frames:
            continue
        leaf = frames[-1]
        profile.samples += n
        profile.areas[area(leaf["file"])] += n
        profile.leaves[_short(leaf["function"], leaf["file"])] += n
        caller = next((f for f in reversed(frames) if _ours(f["file"])), None)
        where = _short(caller["function"], caller["file"]) if caller else NOT_OURS
        profile.ours[where] += n
    return profile


def load(folder: Path) -> list[Profile]:
    """Every profile py-spy wrote under `folder` (a subfolder per scenario), in name order."""
    return [
        parse(p.read_text(), str(p.relative_to(folder).with_suffix("")))
        for p in sorted(folder.rglob("*.txt"))
    ]


def markdown(profiles: list[Profile], rate_hz: int = 100, top: int = 12) -> list[str]:
    """The report's section: per process, CPU by area and by our code, and the hottest leaves."""
    lines = [
        "## Where the CPU went (py-spy)",
        "",
        "Sampled at the same time as the figures above, so those figures are slowed by the "
        "sampling. Areas are the innermost frame's package; *our code* charges each sample to "
        "the innermost frame in services/ or shared/ (the library time it called into included). "
        "Raw stacks: profiles/*.txt (open in speedscope.app).",
    ]
    for profile in profiles:
        if not profile.samples:
            continue
        total = profile.samples
        lines += ["", f"### {profile.name}: {total / rate_hz:,.1f} s sampled running", ""]
        for title, counter in (
            ("area", profile.areas),
            ("our code", profile.ours),
            ("innermost function", profile.leaves),
        ):
            lines += [f"| {title} | share |", "| --- | --- |"]
            lines += [
                f"| {key.replace('|', '/')} | {n / total:.1%} |"
                for key, n in counter.most_common(top)
            ]
            lines.append("")
    return lines
