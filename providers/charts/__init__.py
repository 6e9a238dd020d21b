"""The weekly chart: drawn by a child process (png) so Pillow never loads in the bot."""
