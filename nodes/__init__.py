"""ComfyUI node classes (classic V1 API), thin adapters over `joyvasa/`. Registered by the pack's __init__."""

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
