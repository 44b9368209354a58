"""``python -m gravitex_mcp``: the same program as ``gravitex-mcp``."""

from .cli.main import main

if __name__ == "__main__":
    main()
