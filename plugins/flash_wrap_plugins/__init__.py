"""flash-wrap's built-in solver plugins, one module each, registered through the ``flash_wrap``
entry-point group exactly like a third-party package's plugins."""
