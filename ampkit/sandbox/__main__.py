"""`python -m ampkit.sandbox` runs the same command as `ampkit sandbox`."""
from ampkit.sandbox.cli import command

if __name__ == "__main__":
    command(prog_name="ampkit sandbox")
