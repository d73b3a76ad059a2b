"""Every relative link in README.md leads somewhere in every clone: to a file or
folder of the repository that git does not ignore, or to a heading of the README."""

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
LINKS = re.findall(r"\]\(([^)\s]+)\)", README)


def anchor(heading: str) -> str:
    "The anchor GitHub gives a heading: lowercase, punctuation dropped, spaces as hyphens."
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_relative_links_name_files_that_are_not_ignored():
    relative = [link.split("#")[0] for link in LINKS if not re.match(r"[a-z]+:|#", link)]
    assert relative, "the README links to files of the repository"
    missing = [link for link in relative if not (ROOT / link).exists()]
    assert missing == []
    if shutil.which("git") and (ROOT / ".git").exists():
        ignored = subprocess.run(
            ["git", "-C", str(ROOT), "check-ignore", *relative], capture_output=True, text=True
        ).stdout.split()
        assert ignored == []  # an ignored file is in no clone, so the link is dead there


def test_links_to_headings_name_a_heading():
    headings = {anchor(h) for h in re.findall(r"(?m)^#+ (.+)$", README)}
    targets = [link[1:] for link in LINKS if link.startswith("#")]
    assert targets
    assert [t for t in targets if t not in headings] == []
