# Root conftest: puts the project root on sys.path so `import speech2face` works without installation.
