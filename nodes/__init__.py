"""ComfyUI node classes (classic V1 API), thin adapters over `joyvasa/`. Registered by the pack's __init__."""
from .direct import JoyVASAFade, JoyVASAHeadMotion, JoyVASAMouth
from .direct_face import JoyVASABlinks, JoyVASAExpressionFromImage, JoyVASAGaze
from .loaders import JoyVASALoadFaceDetector, JoyVASALoadMotionGenerator, JoyVASALoadRenderer
from .mix import JoyVASAMixMotion
from .motion import JoyVASAEncodeAudio, JoyVASASampleMotion
from .motion_files import JoyVASALoadMotion, JoyVASASaveMotion
from .preview import JoyVASAMotionPreview
from .render import JoyVASAAnimate, JoyVASARender, JoyVASARenderToFile
from .source import JoyVASAPrepareSource
from .video import JoyVASADubVideo, JoyVASAMotionFromVideo

NODE_CLASS_MAPPINGS: dict[str, type] = {
    "JoyVASALoadRenderer": JoyVASALoadRenderer,
    "JoyVASALoadMotionGenerator": JoyVASALoadMotionGenerator,
    "JoyVASALoadFaceDetector": JoyVASALoadFaceDetector,
    "JoyVASAPrepareSource": JoyVASAPrepareSource,
    "JoyVASAEncodeAudio": JoyVASAEncodeAudio,
    "JoyVASASampleMotion": JoyVASASampleMotion,
    "JoyVASARender": JoyVASARender,
    "JoyVASARenderToFile": JoyVASARenderToFile,
    "JoyVASAAnimate": JoyVASAAnimate,
    "JoyVASAMotionPreview": JoyVASAMotionPreview,
    "JoyVASASaveMotion": JoyVASASaveMotion,
    "JoyVASALoadMotion": JoyVASALoadMotion,
    "JoyVASAHeadMotion": JoyVASAHeadMotion,
    "JoyVASAGaze": JoyVASAGaze,
    "JoyVASABlinks": JoyVASABlinks,
    "JoyVASAExpressionFromImage": JoyVASAExpressionFromImage,
    "JoyVASAMouth": JoyVASAMouth,
    "JoyVASAFade": JoyVASAFade,
    "JoyVASAMixMotion": JoyVASAMixMotion,
    "JoyVASAMotionFromVideo": JoyVASAMotionFromVideo,
    "JoyVASADubVideo": JoyVASADubVideo,
}

NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "JoyVASALoadRenderer": "JoyVASA Load Renderer (LivePortrait)",
    "JoyVASALoadMotionGenerator": "JoyVASA Load Motion Generator",
    "JoyVASALoadFaceDetector": "JoyVASA Load Face Detector",
    "JoyVASAPrepareSource": "JoyVASA Prepare Source",
    "JoyVASAEncodeAudio": "JoyVASA Encode Audio",
    "JoyVASASampleMotion": "JoyVASA Sample Motion",
    "JoyVASARender": "JoyVASA Render",
    "JoyVASARenderToFile": "JoyVASA Render to File (mp4)",
    "JoyVASAAnimate": "JoyVASA Animate (all in one)",
    "JoyVASAMotionPreview": "JoyVASA Motion Preview",
    "JoyVASASaveMotion": "JoyVASA Save Motion",
    "JoyVASALoadMotion": "JoyVASA Load Motion",
    "JoyVASAHeadMotion": "JoyVASA Head Motion",
    "JoyVASAGaze": "JoyVASA Gaze",
    "JoyVASABlinks": "JoyVASA Blinks",
    "JoyVASAExpressionFromImage": "JoyVASA Expression from Image",
    "JoyVASAMouth": "JoyVASA Mouth (lips, silences)",
    "JoyVASAFade": "JoyVASA Fade In/Out",
    "JoyVASAMixMotion": "JoyVASA Mix Motion",
    "JoyVASAMotionFromVideo": "JoyVASA Motion from Video",
    "JoyVASADubVideo": "JoyVASA Dub Video (mp4)",
}
