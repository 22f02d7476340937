"""Tasks: the registry of what each task is, the label kinds, and the sources their rows come from.

Each module names what it may import; none imports ``config`` or anything above it.
"""
