"""Print the shell commands of README.md's first ```bash block, one per line."""

import sys
from pathlib import Path


def first_block_commands(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "```bash")
    commands = []
    for line in lines[start + 1 :]:
        if line.strip() == "```":
            break
        if line.strip() and not line.lstrip().startswith("#"):
            commands.append(line.strip())
    return commands


if __name__ == "__main__":
    print("\n".join(first_block_commands(Path(sys.argv[1]).read_text(encoding="utf-8"))))
