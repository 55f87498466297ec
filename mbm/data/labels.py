"""The labels of the shared data (``../shared/data``): the devices of its photo folders and the command words of
its speech. The data readers, the ImageNet device mapping and the scenarios share them."""

DEVICES = ("blinds", "door", "fan", "heater", "lamp", "music_player", "tv")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go") + DIGITS
