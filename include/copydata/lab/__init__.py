"""`copydata lab`: throw-away database labs on the FlashArray emulator (or a real array), ready for SLAs."""
