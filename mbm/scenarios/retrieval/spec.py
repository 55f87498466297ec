"""Retrieval: the classes of the evaluation collection and the words for them (no model code).

``TRAIN_CAPTIONS`` are what the alignment is trained on (and the text anchors); ``EVAL_PARAPHRASES``
are held out: none of them is a training caption (a test checks it), so ``text_to_image_map`` measures
words the heads were not trained on; ``VALIDATION_PARAPHRASES`` are a third set that settings are
chosen on. ``SPOKEN_NAMES`` are the device names spoken in ``spoken_to_image_map``. ``MIXED``
are the photo + text queries where the text changes the target.
"""

from __future__ import annotations

CLASSES = ("blinds", "door", "fan", "heater", "lamp", "music_player", "tv")

TRAIN_CAPTIONS: dict[str, tuple[str, ...]] = {
    "blinds": ("blinds", "window blinds", "curtains", "a curtain", "drapes over a window", "roller shade",
               "venetian blinds", "a window covering"),
    "door": ("door", "a door", "front door", "a wooden door", "patio door", "an entrance to a house",
             "sliding glass door", "a doorway"),
    "fan": ("fan", "an electric fan", "ceiling fan", "desk fan", "tower fan", "a pedestal fan",
            "a fan that blows air", "a ventilator"),
    "heater": ("heater", "space heater", "an oil radiator", "electric heater", "a propane heater",
               "a device that heats a room", "a fan heater", "a radiator"),
    "lamp": ("lamp", "table lamp", "desk lamp", "floor lamp", "a lamp with a shade", "a light fixture",
             "a bedside lamp", "a lamp that is switched on"),
    "music_player": ("music player", "radio", "boombox", "cd player", "cassette player", "a stereo",
                     "hi-fi system", "a portable radio"),
    "tv": ("tv", "television", "a flat screen tv", "a computer monitor", "a screen", "a display",
           "a tv set", "an lcd monitor"),
}

EVAL_PARAPHRASES: dict[str, tuple[str, ...]] = {
    "blinds": ("shades that cover a window", "something to keep the sunlight out", "window treatment",
               "fabric hanging by the window"),
    "door": ("the way into a room", "something you open to walk through", "an entryway",
             "a doorway with a handle"),
    "fan": ("something that cools me down", "spinning blades moving air", "a blower for hot days",
            "an appliance that circulates air"),
    "heater": ("something that keeps me warm in winter", "a warming appliance", "a heating unit",
               "a portable heat source"),
    "lamp": ("a reading light", "something that lights a room", "a light for my desk",
             "a lampshade on a stand"),
    "music_player": ("something to play songs on", "a device for listening to music", "a sound system",
                     "a tape deck"),
    "tv": ("something to watch the news on", "a telly", "a screen for movies", "a flat panel display"),
}

# Chooses the text settings (the anchor temperature); neither a training caption nor an evaluation
# paraphrase (a test checks both), so EVAL_PARAPHRASES stay unseen by every choice.
VALIDATION_PARAPHRASES: dict[str, tuple[str, ...]] = {
    "blinds": ("roman shades", "something to darken the bedroom", "slats over the glass", "a net curtain"),
    "door": ("a front entrance", "where guests knock", "a hinged panel in a wall", "the exit of the house"),
    "fan": ("something to stay cool in summer", "a box fan", "rotating blades", "an air cooler that spins"),
    "heater": ("something to warm up a cold room", "a convector", "a little furnace for the bedroom",
               "a radiant heater"),
    "lamp": ("a light on the nightstand", "a bulb with a shade", "an adjustable light", "a standing light"),
    "music_player": ("a ghetto blaster", "a device that plays tapes", "a speaker system for songs", "a walkman"),
    "tv": ("a big screen in the living room", "something to watch films on", "a plasma set",
           "a computer screen"),
}

# Texts about none of the classes, from everyday things to appliances that are not among them: how
# often the search says a text is off its subject (``off_topic_flagged``). Never used to choose
# anything (the margin is chosen on VALIDATION_PARAPHRASES alone).
OFF_TOPIC_TEXTS: tuple[str, ...] = (
    "a microwave oven", "a fridge full of food", "a washing machine", "a laptop on a desk", "a printer",
    "a toaster", "an electric kettle", "a vacuum cleaner", "a dishwasher", "a computer keyboard",
    "a mobile phone", "an office chair", "a leather sofa", "a double bed", "a bookshelf", "a bathroom mirror",
    "a potted plant", "a kitchen sink", "a grey cat", "a golden retriever", "a pigeon on a roof",
    "a vintage car", "a city bus", "a mountain bike", "a container ship", "a loaf of bread", "an orange",
    "a plate of spaghetti", "a glass of milk", "a chocolate cake", "a tennis racket", "a pair of jeans",
    "a wristwatch", "a backpack", "a lighthouse", "a castle", "a waterfall", "a volcano", "a jellyfish",
    "a hot air balloon",
)

SPOKEN_NAMES: dict[str, tuple[str, ...]] = {
    "blinds": ("blinds", "curtains"), "door": ("door",), "fan": ("fan", "ceiling fan"),
    "heater": ("heater", "space heater"), "lamp": ("lamp", "table lamp"),
    "music_player": ("radio", "music player"), "tv": ("television", "monitor"),
}

# photo of class A + a text naming class B -> relevant: B items of the photo's source (its look)
MIXED_TEXTS: dict[str, str] = {
    "blinds": "but curtains instead", "door": "but a door instead", "fan": "but a ceiling fan instead",
    "heater": "but a space heater instead", "lamp": "but a lamp instead",
    "music_player": "but a radio instead", "tv": "but a television instead",
}
