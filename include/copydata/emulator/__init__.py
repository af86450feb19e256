"""A FlashArray emulator: real REST 1.x and 2.x over HTTPS, real reflink-backed volumes."""
