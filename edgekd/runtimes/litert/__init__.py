"""LiteRT (TFLite): export with ``litert-torch``, quantize with ``ai-edge-quantizer``, run, time and profile with
``ai-edge-litert``. Every module imports its packages inside the functions that use them (optional extra
``[litert]``)."""
