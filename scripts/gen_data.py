#!/usr/bin/env python3
"""Training data for the shipped specialists (python3 standard library only, seeded).

    python3 scripts/gen_data.py OUT_DIR [--seed 1]

Writes, each as train / dev / test JSONL split BY TEMPLATE (a template's sentences are all in
one split, so the test split measures phrasings the model never saw):

  assistant/{train,dev,test}.jsonl   smart-home voice commands:
        {"text", "intent", "slots": {name: span of the text}, "group", "template"}
        intents: lights_on lights_off set_brightness set_color set_temperature get_temperature
        play_music pause_music set_volume set_timer cancel_timer set_alarm get_weather get_time
        add_to_list lock_door unlock_door chat ("chat" is everything out of domain).
        slots: room level color temperature artist genre duration time day location item list
        door. level and temperature are the number only ("20" of "20 percent"); duration is the
        whole "10 minutes". "group" ties paraphrases (same intent and slot values) together for
        the embedding objective.
  replies/{train,dev,test}.jsonl     {"prompt", "completion"} for the reply LM: an action
        ("lights_on room=kitchen") -> a short reply naming the device and room; a chat utterance
        -> a short generic answer; an IoT finding -> its one-sentence explanation.
  iot/{train,dev,test}.jsonl         {"text": a serialized window of sensor readings, "intent":
        normal | bearing_wear | overheating | pressure_leak | sensor_fault, "explanation",
        "template"}

Variety on purpose: politeness and fillers ("um, could you..."), wake words, indirect requests
("it's too dark in the kitchen"), several word orders, numbers as digits and as words, mixed
case, and typos in about 3% of the words outside slot values.
"""
import json
import os
import random
import sys

# ============================================================ vocabularies

ROOMS = ["kitchen", "living room", "bedroom", "bathroom", "office", "hallway", "garage",
         "dining room", "basement", "attic", "kids room", "guest room", "porch", "laundry room",
         "study", "nursery", "master bedroom", "upstairs", "downstairs", "den", "family room",
         "hall", "lounge", "playroom", "sunroom", "patio", "backyard", "front yard", "closet",
         "pantry", "garden", "balcony", "library", "gym", "workshop", "entryway"]
COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "pink", "white", "warm white",
          "cool white", "teal", "cyan", "magenta", "amber", "lavender", "gold", "turquoise",
          "violet", "soft yellow", "daylight"]
ARTISTS = ["taylor swift", "the beatles", "miles davis", "beyonce", "coldplay", "adele", "queen",
           "daft punk", "bob marley", "norah jones", "radiohead", "ed sheeran", "bach",
           "mozart", "drake", "the rolling stones", "billie eilish", "frank sinatra",
           "fleetwood mac", "kendrick lamar", "nina simone", "abba", "metallica", "shakira",
           "john coltrane", "dua lipa", "elton john", "the weeknd", "louis armstrong", "rihanna"]
GENRES = ["jazz", "rock", "classical", "pop", "hip hop", "country", "blues", "reggae",
          "lo-fi", "ambient", "metal", "folk", "electronic", "soul", "funk", "disco", "punk",
          "indie", "r&b", "techno", "latin", "gospel", "opera", "chill"]
CITIES = ["paris", "london", "tokyo", "new york", "berlin", "madrid", "rome", "chicago",
          "seattle", "sydney", "toronto", "boston", "lisbon", "dublin", "oslo", "vienna",
          "prague", "mumbai", "cairo", "denver", "austin", "miami", "munich", "zurich",
          "amsterdam", "barcelona", "san francisco", "los angeles", "mexico city", "seoul",
          "singapore", "helsinki", "warsaw", "athens", "nairobi", "lima"]
ITEMS = ["milk", "eggs", "bread", "butter", "coffee", "apples", "bananas", "cheese", "rice",
         "pasta", "tomatoes", "onions", "chicken", "toilet paper", "dish soap", "batteries",
         "olive oil", "orange juice", "yogurt", "cereal", "tea", "sugar", "flour", "salt",
         "garlic", "carrots", "potatoes", "shampoo", "toothpaste", "light bulbs", "paper towels",
         "dog food", "cat litter", "lemons", "avocados", "spinach", "honey", "peanut butter"]
LISTS = ["shopping list", "grocery list", "to-do list", "todo list", "packing list",
         "hardware list", "wish list", "costco list", "party list", "chores list"]
DOORS = ["front door", "back door", "garage door", "side door", "patio door", "basement door",
         "gate", "main door", "kitchen door", "office door", "shed door", "garden gate"]
DAYS = ["today", "tomorrow", "tonight", "monday", "tuesday", "wednesday", "thursday", "friday",
        "saturday", "sunday", "this weekend", "next week", "tomorrow morning", "this afternoon",
        "the weekend"]
NUM_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven",
             8: "eight", 9: "nine", 10: "ten", 11: "eleven", 12: "twelve", 15: "fifteen",
             20: "twenty", 25: "twenty five", 30: "thirty", 40: "forty", 45: "forty five",
             50: "fifty", 60: "sixty", 70: "seventy", 75: "seventy five", 80: "eighty",
             90: "ninety", 100: "one hundred", 18: "eighteen", 19: "nineteen", 21: "twenty one",
             22: "twenty two", 23: "twenty three", 24: "twenty four", 16: "sixteen",
             17: "seventeen", 68: "sixty eight", 72: "seventy two"}

PREFIXES = ["", "", "", "", "please ", "hey shoal, ", "ok shoal ", "um, ", "uh ", "could you ",
            "can you ", "would you ", "would you please ", "could you please ", "i want you to ",
            "i'd like you to ", "hey, ", "so, ", "alright, ", "okay ", "quick, ", "excuse me, ",
            "shoal, ", "hey there, ", "yo, ", "er, ", "mm, ", "kindly "]
SUFFIXES = ["", "", "", "", " please", " thanks", " thank you", " now", " for me",
            " right now", " if you can", " asap", " real quick", " please and thank you",
            " when you get a chance", ", thanks"]


def rand_num(r, lo, hi, step=1):
    return r.randrange(lo, hi + 1, step)


def num_text(r, n):
    """a number as digits, or as words when we have them (a third of the time)"""
    if n in NUM_WORDS and r.random() < 0.33:
        return NUM_WORDS[n]
    return str(n)


def fill_duration(r):
    n = r.choice([1, 2, 3, 5, 10, 15, 20, 25, 30, 40, 45, 60, 90, 2, 5, 10])
    unit = r.choice(["minutes", "minutes", "seconds", "hours", "min", "mins"])
    if n == 1:
        unit = {"minutes": "minute", "seconds": "second", "hours": "hour", "min": "min", "mins": "min"}[unit]
    if r.random() < 0.08:
        return r.choice(["half an hour", "an hour", "a minute", "a couple of minutes", "an hour and a half"])
    return "%s %s" % (num_text(r, n), unit)


def fill_time(r):
    k = r.random()
    h = r.randint(1, 12)
    if k < 0.35:
        return "%d %s" % (h, r.choice(["am", "pm", "a.m.", "p.m.", "in the morning", "in the evening"]))
    if k < 0.65:
        return "%d:%02d%s" % (h, r.choice([0, 15, 30, 45, 5, 10, 20, 40, 50]), r.choice(["", " am", " pm"]))
    if k < 0.8:
        return "%d o'clock" % h
    return r.choice(["noon", "midnight", "half past %d" % h, "quarter to %d" % h, "quarter past %d" % h])


FILLERS = {
    "room": lambda r: r.choice(ROOMS),
    "level": lambda r: num_text(r, r.choice([5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95, 100])),
    "color": lambda r: r.choice(COLORS),
    "temperature": lambda r: num_text(r, r.choice(list(range(16, 27)) + list(range(60, 78, 2)))),
    "artist": lambda r: r.choice(ARTISTS),
    "genre": lambda r: r.choice(GENRES),
    "duration": fill_duration,
    "time": fill_time,
    "day": lambda r: r.choice(DAYS),
    "location": lambda r: r.choice(CITIES),
    "item": lambda r: r.choice(ITEMS),
    "list": lambda r: r.choice(LISTS),
    "door": lambda r: r.choice(DOORS),
}

# ============================================================ templates
# {slot} fills a slot; <name> is one phrase of the word list M[name], chosen per sentence (the
# lists are shared by the templates, so a held-out template is a new sentence frame made of
# words seen elsewhere -- as in real speech). A template is one sentence frame.

M = {
    "the": ["the", "the", "my", "our"],
    "light": ["lights", "lights", "light", "lamp", "lamps", "ceiling light", "bulbs", "overhead lights", "light bulbs"],
    "on": ["turn on", "switch on", "put on", "flip on", "power on", "activate", "enable", "start"],
    "off": ["turn off", "switch off", "shut off", "kill", "cut", "power off", "put out", "disable", "deactivate"],
    "dark": ["dark", "too dark", "pitch black", "gloomy", "way too dark", "really dark"],
    "bright": ["too bright", "way too bright", "really bright", "blinding", "too light"],
    "dimv": ["dim", "lower", "turn down", "drop", "bring down", "reduce"],
    "raisev": ["raise", "turn up", "brighten", "increase", "bump up", "crank up"],
    "setv": ["set", "put", "change", "adjust", "make", "bring", "turn"],
    "pct": ["percent", "percent", "%", "per cent"],
    "brightness": ["brightness", "light level", "dimmer", "brightness level"],
    "colorv": ["make", "change", "turn", "switch", "set"],
    "thermo": ["thermostat", "heating", "heat", "temperature", "ac", "air conditioning"],
    "deg": ["degrees", "degrees", "degrees celsius", "degrees fahrenheit", "°"],
    "warmv": ["warm up", "heat", "heat up"],
    "coolv": ["cool", "cool down", "chill"],
    "howwarm": ["how warm", "how cold", "how hot", "what temperature"],
    "temp": ["temperature", "temp", "temperature reading"],
    "music": ["music", "song", "track", "playback", "tunes", "audio", "playlist"],
    "playv": ["play", "put on", "start", "queue up", "throw on", "blast", "shuffle"],
    "pausev": ["pause", "stop", "halt", "hold", "freeze", "silence", "mute"],
    "volume": ["volume", "sound", "speaker volume", "sound level"],
    "louder": ["louder", "quieter", "softer", "up", "down"],
    "timer": ["timer", "countdown", "kitchen timer"],
    "settimer": ["set", "start", "make", "create", "put on", "begin"],
    "cancelv": ["cancel", "stop", "delete", "clear", "remove", "abort", "end", "scrap", "dismiss", "turn off", "get rid of"],
    "alarm": ["alarm", "alarm clock", "wake up alarm"],
    "wake": ["wake me up", "wake me", "get me up", "ring me"],
    "weather": ["weather", "forecast", "weather forecast"],
    "rain": ["rain", "snow", "be sunny", "be windy", "be cold", "be hot", "storm"],
    "tell": ["tell me", "give me", "what's", "show me", "check"],
    "addv": ["add", "put", "write down", "stick", "throw", "jot down", "note", "include"],
    "buy": ["buy", "get", "pick up", "grab"],
    "lockv": ["lock", "secure", "bolt", "lock up"],
    "unlockv": ["unlock", "open", "unbolt", "unlatch"],
    "can": ["can you", "could you", "would you", "will you", "please"],
    "want": ["i want", "i'd like", "i need", "i would like"],
    # out of domain (chat): topics, tasks, people, feelings
    "thing": ["a black hole", "gravity", "the internet", "a haiku", "love", "photosynthesis", "an atom",
              "democracy", "a volcano", "inflation", "a rainbow", "bitcoin", "a neutron star", "dna",
              "the stock market", "a vaccine", "jazz theory", "a leap year", "the big bang", "a tsunami"],
    "task": ["make pancakes", "fix a flat tire", "boil an egg", "meditate", "tie a tie", "learn spanish",
             "change a diaper", "bake bread", "write a resume", "lose weight", "fall asleep faster",
             "start running", "plant tomatoes", "get rid of hiccups", "save money", "unclog a sink"],
    "person": ["shakespeare", "einstein", "the president", "my mom", "napoleon", "cleopatra", "mozart",
               "the first astronaut", "marie curie", "the pope", "your creator", "lincoln"],
    "fact": ["the tallest mountain", "the biggest ocean", "the longest river", "the capital of france",
             "the population of china", "the speed of light", "the distance to the moon", "the oldest tree",
             "the fastest animal", "the hottest planet", "the smallest country", "the deepest lake"],
    "feel": ["sad", "bored", "tired", "lonely", "happy", "stressed", "hungry", "excited", "anxious", "great"],
    "media": ["a movie", "a book", "a podcast", "a recipe", "a board game", "a tv show", "a restaurant", "a gift"],
    "story": ["a joke", "a story", "a riddle", "a fun fact", "a poem", "something interesting", "a secret",
              "something funny", "a tongue twister"],
    "greet": ["hello", "hi", "hi there", "hey", "good morning", "good evening", "good night", "goodbye",
              "see you later", "thanks", "thank you", "bye"],
}

T = {}
T["lights_on"] = [
    "<on> <the> {room} <light>", "<on> <the> <light> in the {room}", "turn <the> <light> on in the {room}",
    "<light> on in the {room}", "{room} <light> on", "<can> <on> the <light> in the {room}",
    "<on> the <light>", "<light> on", "switch <the> <light> on", "it's <dark> in the {room}",
    "it's <dark> in here", "<cantsee> the {room}", "light up the {room}",
    "make the {room} brighter", "give me some light in the {room}", "<light> please",
    "the {room} is <dark>", "flip the {room} <light> on", "<want> the <light> on in the {room}",
    "<want> some light in the {room}", "the <light> in the {room} should be on", "the {room} needs light",
    "on with the {room} <light>", "brighten up the {room}", "can we have the {room} <light> on",
    "get the <light> on in the {room}", "<on> every <light> in the {room}", "<on> all the <light>",
    "the {room} <light>, on please", "why is it so dark in the {room}", "<on> the {room} <light> for me",
    "could use some light in the {room}", "i'm in the {room}, <light> on", "lights on in here",
]
T["lights_off"] = [
    "<off> <the> {room} <light>", "<off> <the> <light> in the {room}", "turn <the> <light> off in the {room}",
    "<light> off in the {room}", "{room} <light> off", "<can> <off> the <light> in the {room}",
    "<off> the <light>", "<light> off", "switch <the> <light> off", "it's <bright> in the {room}",
    "it's <bright> in here", "the {room} is <bright>", "darken the {room}", "make it dark in the {room}",
    "no more <light> in the {room}", "<light> out", "<noneed> the {room} <light> anymore",
    "<want> the <light> off in the {room}", "the <light> in the {room} should be off",
    "the {room} doesn't need the <light> on", "off with the {room} <light>", "get the <light> off in the {room}",
    "<off> every <light> in the {room}", "<off> all the <light>", "the {room} <light>, off please",
    "i'm leaving the {room}, <light> off", "nobody is in the {room}, <off> the <light>",
    "<off> the {room} <light> for me", "lights out in the {room}", "lights off in here", "i'm going to sleep, <off> the <light>",
]
T["set_brightness"] = [
    "<setv> the {room} <light> to {level} <pct>", "<dimv> the {room} <light> to {level} <pct>",
    "<brightness> {level} <pct> in the {room}", "<setv> the <brightness> to {level} <pct>",
    "make the <light> {level} <pct>", "<dimv> the <light> to {level}", "<raisev> the <light> to {level} <pct>",
    "{room} <light> at {level} <pct>", "<setv> the {room} to {level} <pct> <brightness>",
    "<setv> the <brightness> in the {room} to {level}", "<want> the {room} <light> at {level} <pct>",
    "<raisev> the {room} <light> to {level} <pct>", "<setv> {room} <brightness> to {level}",
    "{level} <pct> <brightness> please", "the {room} <light> at {level} <pct>", "<light> to {level} <pct>",
    "<can> <setv> the <light> to {level} <pct> in the {room}", "<dimv> it to {level} <pct>",
    "go to {level} <pct> in the {room}", "<brightness> at {level} in the {room}",
    "<dimv> the {room} <brightness> to {level} <pct>", "<raisev> the {room} <brightness> to {level}",
    "the <light> are too bright, <dimv> them to {level} <pct>", "<brightness> {level}",
    "too dark in the {room}, <light> to {level} <pct>", "<setv> the <light> in the {room} at {level} <pct>",
]
T["set_color"] = [
    "<colorv> the {room} <light> {color}", "<colorv> the {room} <light> to {color}", "<setv> the <light> to {color}",
    "{color} <light> in the {room}", "<want> {color} light in the {room}", "<setv> the {room} color to {color}",
    "make it {color} in the {room}", "change the color to {color}", "go {color} in the {room}",
    "<light> to {color} please", "can the {room} <light> be {color}", "<setv> {room} lighting to {color}",
    "change the {room} <light> to {color}", "<colorv> the <light> {color}", "make the <light> {color}",
    "{room} <light> {color}", "switch to {color} light", "<setv> a {color} color in the {room}",
    "give the {room} a {color} glow", "<want> the <light> {color}", "the {room} <light> should be {color}",
    "change the {room} <light> to a {color} tone", "{color} light please", "turn the {room} {color}",
    "<can> make the {room} <light> {color}", "i'd love {color} <light> in the {room}", "color {color} in the {room}",
]
T["set_temperature"] = [
    "<setv> the <thermo> to {temperature} <deg>", "<setv> the {room} to {temperature} <deg>",
    "make it {temperature} <deg> in the {room}", "<warmv> the {room} to {temperature}",
    "change the <thermo> to {temperature}", "<thermo> to {temperature} <deg>", "<want> it {temperature} <deg>",
    "<coolv> the {room} to {temperature} <deg>", "turn the <thermo> up to {temperature}",
    "turn the <thermo> down to {temperature}", "put the <thermo> at {temperature} <deg>",
    "{temperature} <deg> in the {room} please", "<warmv> the {room} to {temperature} <deg>",
    "adjust the {room} <thermo> to {temperature}", "<can> <setv> the <thermo> to {temperature}",
    "it's cold, <setv> it to {temperature}", "it's hot in the {room}, make it {temperature} <deg>",
    "make the {room} {temperature} <deg>", "bump the <thermo> to {temperature}", "lower the <thermo> to {temperature} <deg>",
    "the {room} should be {temperature} <deg>", "<thermo> {temperature} in the {room}",
    "keep the {room} at {temperature} <deg>", "<want> {temperature} <deg> in the {room}",
    "it's freezing in the {room}, <thermo> to {temperature}", "raise the <thermo> in the {room} to {temperature}",
]
T["get_temperature"] = [
    "what's the <temp> in the {room}", "<howwarm> is it in the {room}", "<howwarm> is the {room}",
    "what is the <temp> inside", "what's the thermostat set to", "is it warm in the {room}",
    "<tell> the {room} <temp>", "<howwarm> is it in here", "what <temp> is it in the {room}",
    "check the <temp> in the {room}", "current <temp> please", "how many degrees is it in the {room}",
    "is the {room} cold", "read the thermostat", "what's the indoor <temp>", "<temp> in the {room}?",
    "<howwarm> is the house", "is it hot in the {room}", "what does the thermostat say",
    "<can> check the {room} <temp>", "is the heating working in the {room}", "i wonder <howwarm> the {room} is",
    "what's the <temp> right now", "<tell> the <temp> in the {room}", "is it chilly in the {room}",
]
T["play_music"] = [
    "<playv> some {genre}", "<playv> {artist}", "<playv> {genre} music in the {room}", "<playv> some {artist}",
    "<want> to hear {artist}", "<playv> music", "<playv> some {genre} music", "<playv> {artist} in the {room}",
    "music please", "<playv> something by {artist}", "<can> <playv> {genre}", "let's hear some {artist}",
    "<playv> my {genre} playlist", "put some music on in the {room}", "start playing {artist}",
    "i feel like {genre}", "i'm in the mood for {genre}", "<playv> {genre} by {artist}", "some {artist} would be nice",
    "<playv> the latest {artist} album", "resume the <music>", "<playv> a {genre} station",
    "<want> some {genre} in the {room}", "<want> to listen to {artist}", "turn on the music",
    "<playv> {artist} songs", "start the {genre} radio", "<playv> something relaxing", "get some {genre} going",
    "<can> put on {artist} in the {room}", "unpause the <music>", "music in the {room}", "<playv> some tunes",
]
T["pause_music"] = [
    "<pausev> the <music>", "<pausev> the <music> in the {room}", "<pausev>", "stop playing", "<pausev> it",
    "<pausev> the <music> please", "be quiet", "that's enough music", "turn the <music> off",
    "<can> <pausev> the <music>", "shut the <music> off", "cut the <music>", "hit pause", "<pausev> the speaker in the {room}",
    "<pausev> this <music>", "<pausev> what's playing", "no more <music>", "kill the <music>", "quiet please",
    "enough <music> in the {room}", "<pausev> the {room} speaker", "i can't hear myself think, <pausev> the <music>",
    "<want> silence", "<pausev> the <music> for a second", "turn off the <music> in the {room}", "put the <music> on hold",
]
T["set_volume"] = [
    "<setv> the <volume> to {level}", "<volume> {level}", "turn the <volume> up to {level}", "turn it down to {level}",
    "make it <louder>, {level} <pct>", "<setv> <volume> to {level} <pct> in the {room}", "<volume> to {level} please",
    "change the <volume> to {level}", "lower the <volume> to {level}", "raise the <volume> to {level}",
    "turn the {room} speaker to {level}", "<want> the <volume> at {level}", "put the <volume> at {level} <pct>",
    "adjust the <volume> to {level}", "music <volume> {level}", "<volume> at {level} <pct>",
    "<can> <setv> the <volume> to {level}", "bring the <volume> down to {level}", "crank it to {level}",
    "make the {room} speaker {level} <pct>", "turn the <volume> down to {level}", "<louder>, {level} <pct> please",
    "<volume> {level} in the {room}", "too loud, <volume> {level}", "i can't hear it, <volume> to {level}",
]
T["set_timer"] = [
    "<settimer> a <timer> for {duration}", "<timer> for {duration}", "<settimer> a {duration} <timer>",
    "count down {duration}", "remind me in {duration}", "<setv> the <timer> to {duration}",
    "<can> time {duration}", "<settimer> a <timer> for {duration}", "<want> a <timer> for {duration}",
    "{duration} <timer> please", "time {duration} for me", "<settimer> a <timer> for {duration} for the pasta",
    "start counting down from {duration}", "let me know in {duration}", "<timer> {duration}",
    "give me a {duration} <timer>", "alert me after {duration}", "<can> <settimer> a {duration} <timer>",
    "the pizza needs {duration}, <settimer> a <timer>", "ping me in {duration}", "<timer> for {duration} please",
    "a {duration} <timer>", "<want> to be reminded in {duration}",
]
T["cancel_timer"] = [
    "<cancelv> the <timer>", "<cancelv> my {duration} <timer>", "<cancelv> the {duration} <timer>",
    "never mind the <timer>", "<noneed> the <timer> anymore", "forget the <timer>", "<cancelv> all <timer>s",
    "<can> <cancelv> the <timer>", "<cancelv> my <timer>", "no more <timer>", "<timer> off",
    "<cancelv> the <timer> please", "the <timer> isn't needed", "<cancelv> that {duration} <timer>",
    "stop counting down", "<cancelv> the <timer> for the pasta", "<want> the <timer> gone",
]
T["set_alarm"] = [
    "<settimer> an <alarm> for {time}", "<wake> at {time}", "<alarm> at {time}", "<settimer> an <alarm> for {time} {day}",
    "<wake> at {time} {day}", "<want> an <alarm> at {time}", "<setv> my <alarm> to {time}",
    "<alarm> for {time} please", "<can> <wake> at {time} {day}", "{day} <wake> at {time}", "<settimer> a {time} <alarm>",
    "schedule an <alarm> at {time} {day}", "<alarm> {time} {day}", "<want> to wake up at {time} {day}",
    "<setv> the <alarm> for {time}", "add an <alarm> at {time}", "wake up call at {time} {day}",
    "i have to get up at {time}", "<can> <settimer> an <alarm> for {time}", "make sure i'm up at {time} {day}",
    "<alarm> at {time} {day} please",
]
T["get_weather"] = [
    "what's the <weather>", "what's the <weather> in {location}", "will it <rain> {day}",
    "what's the <weather> like {day}", "how's the <weather> in {location} {day}", "is it going to <rain> {day}",
    "<weather> for {location}", "do i need an umbrella {day}", "what's the <weather> {day}",
    "how hot will it be {day}", "is it sunny in {location}", "<weather> in {location} please",
    "<tell> the <weather> for {day}", "will it <rain> in {location} {day}", "what's the <weather> going to be {day}",
    "<weather> for {location} {day}", "is it raining in {location}", "how's the <weather> outside",
    "should i bring a jacket {day}", "any rain in {location} {day}", "<weather> report",
    "<tell> the <weather> in {location}", "is there a storm coming {day}", "how windy is it in {location}",
    "<can> check the <weather> for {location}", "what will the <weather> be in {location} {day}",
]
T["get_time"] = [
    "what time is it", "what's the time", "<tell> the time", "what time is it in {location}", "time please",
    "do you know what time it is", "what's the time in {location}", "current time", "what time is it now",
    "how late is it", "what's the local time in {location}", "time in {location}", "what hour is it",
    "check the time", "what time do you have", "time check", "what's the time right now in {location}",
    "<can> <tell> the time", "what time is it over in {location}", "<tell> the time in {location}",
]
T["add_to_list"] = [
    "<addv> {item} to my {list}", "<addv> {item} on the {list}", "<addv> {item} to the {list}",
    "i need {item}, add it to the {list}", "{item} on the {list} please", "add {item}",
    "remember to <buy> {item}", "<addv> {item} to {list}", "<can> <addv> {item} to the {list}",
    "we're out of {item}, <addv> it to the {list}", "<addv> {item} to the list", "{list}: add {item}",
    "don't let me forget {item} on the {list}", "we need {item}", "<addv> {item} for the {list}",
    "we're running low on {item}", "<want> {item} on my {list}", "i have to <buy> {item}, put it on the {list}",
    "put {item} on there", "<addv> {item} please", "my {list} needs {item}", "<can> <addv> {item}",
]
T["lock_door"] = [
    "<lockv> the {door}", "make sure the {door} is locked", "<lockv> the doors", "{door} lock",
    "<can> <lockv> the {door}", "lock it up", "is the {door} locked? lock it", "engage the lock on the {door}",
    "shut and lock the {door}", "lock everything", "<lockv> the {door} for the night", "lock down the {door}",
    "close and <lockv> the {door}", "i'm leaving, <lockv> the {door}", "keep the {door} locked",
    "<want> the {door} locked", "the {door} should be locked", "<lockv> the house", "<lockv> the {door} please",
]
T["unlock_door"] = [
    "<unlockv> the {door}", "<unlockv> the {door} please", "let me in the {door}", "release the lock on the {door}",
    "<can> <unlockv> the {door}", "<unlockv> the doors", "{door} unlock", "open up the {door}",
    "disengage the {door} lock", "let the guests in through the {door}", "unlock it", "i'm home, <unlockv> the {door}",
    "open the lock on the {door}", "undo the {door} lock", "let me into the house", "<want> the {door} unlocked",
    "the {door} should be unlocked", "my friend is here, <unlockv> the {door}", "pop the {door} open",
]
T["chat"] = [
    "how are you", "<greet>", "<greet> shoal", "tell me <story>", "what's your name", "who made you",
    "what can you do", "i love you", "are you a robot", "what is the meaning of life", "sing me a song",
    "how old are you", "do you like music", "what's two plus two", "who is <person>", "i'm <feel>",
    "i'm <feel> today", "i feel <feel>", "what should i eat for dinner", "recommend <media>",
    "how do i <task>", "what is <thing>", "explain <thing>", "what's <fact>", "who won the game last night",
    "do you dream", "are you listening", "never mind", "what's up", "can you help me with my homework",
    "translate hello to spanish", "how do you spell necessary", "flip a coin", "roll a die", "what day is it",
    "what's your favorite color", "do you have feelings", "who am i", "let's play a game", "i had a long day",
    "what's the best pizza topping", "are you smart", "can you cook", "where do you live", "tell me about <thing>",
    "what language do you speak", "what's the news", "how's it going", "talk to me", "say something funny",
    "what's the square root of nine", "how many legs does a spider have", "who wrote hamlet", "why is the sky blue",
    "do you sleep", "you're awesome", "that's not what i meant", "cancel", "what can i ask you", "are you there",
    "how do magnets work", "what rhymes with orange", "order a pizza", "call mom", "send a text to john",
    "what is shoal", "are you better than alexa", "how much is a dollar in euros", "do you know <person>",
    "can dogs eat chocolate", "why do cats purr", "how many days until christmas", "who invented the telephone",
    "you're funny", "play rock paper scissors", "what's your purpose", "can you keep a secret", "bless you",
    "are aliens real", "define serendipity", "i want to learn how to <task>", "can you teach me to <task>",
    "what do you think about <thing>", "do you believe in <thing>", "my friend says <person> was tall",
    "give me advice on how to <task>", "is <thing> dangerous", "how big is <fact>", "where is <fact>",
    "what do you know about <person>", "i need help to <task>", "write me <story>", "know any good <media>",
    "i'm so <feel> right now", "tell me something about <person>", "what was <person> famous for",
    "do you like <person>", "what happened today", "any plans for the weekend", "what are you doing",
    "is it a good idea to <task>", "help me <task>", "what's the difference between <thing> and <thing>",
]

M.update({
    "alldoors": ["the house", "the doors", "all the doors", "everything", "the place", "all doors", "the home"],
    "mkdark": ["make it dark in", "darken", "no light in", "make it darker in"],
    "warmq": ["warm", "cold", "hot", "chilly", "cool", "freezing"],
    "countdown": ["counting down", "the countdown", "the count down"],
    "resume": ["resume", "unpause", "continue", "restart", "keep playing"],
    "listv": ["shopping list", "list", "groceries"],
})
T["lights_on"] += ["i need more light in the {room}", "more light please", "the {room} could use some light",
                   "turn <the> {room} <light> on for me", "<can> get the {room} <light> on", "make the {room} light",
                   "<on> the <light> in here", "let there be light in the {room}", "it's getting <dark> in the {room}",
                   "switch the {room} <light> on please"]
T["lights_off"] += ["<mkdark> the {room}", "i want it dark in the {room}", "make the {room} dark",
                    "<can> <mkdark> the {room}", "the <light> can go off in the {room}", "we don't need light in the {room}",
                    "<off> the <light> in here", "less light, <off> the {room} <light>", "too much light in the {room}",
                    "it's too bright, <mkdark> here"]
T["set_brightness"] += ["<light> {level} <pct> in the {room}", "<dimv> the <light> in the {room} to {level} <pct>",
                        "<raisev> <brightness> to {level}", "make it {level} <pct> bright in the {room}",
                        "{room} at {level} <pct> <brightness>"]
T["set_color"] += ["<colorv> the {room} lighting {color}", "{color} in the {room} please", "i want the {room} in {color}",
                   "<can> <colorv> the <light> to {color}", "a {color} light in the {room}"]
T["set_temperature"] += ["<thermo> at {temperature}", "set it to {temperature} <deg> in the {room}",
                         "i'm cold, make it {temperature}", "i'm hot, <coolv> it to {temperature} <deg>",
                         "<warmv> the house to {temperature}", "<can> make it {temperature} <deg> in here"]
T["get_temperature"] += ["is it <warmq> in the {room}", "is the {room} <warmq>", "is it <warmq> in here",
                         "is it <warmq> inside", "how <warmq> is it in the {room}", "<can> tell me if the {room} is <warmq>",
                         "what's the <temp> like in the {room}", "is it <warmq> in the {room} right now"]
T["play_music"] += ["<resume> the <music>", "<resume> playing", "<can> <resume> the <music> in the {room}",
                    "<resume> the {genre}", "play the <music> <again>", "<playv> {artist} please", "<playv> {genre} for me"]
T["pause_music"] += ["<pausev> the <music> now", "<pausev> the {room} <music>", "<pausev> playing music",
                     "<can> <pausev> it", "<pausev> the <music> for a minute", "stop the <music> in here"]
T["set_volume"] += ["<volume> {level} please", "put it at {level}", "<setv> it to {level} <pct> <volume>",
                    "make the <volume> {level}", "<volume> down to {level}", "<volume> up to {level}"]
T["set_timer"] += ["<timer> of {duration}", "<can> <settimer> a <timer> for {duration}", "{duration} on the <timer>",
                   "start <countdown> from {duration}", "<settimer> <countdown> for {duration}"]
T["cancel_timer"] += ["stop <countdown>", "<cancelv> <countdown>", "<can> stop <countdown>", "no more <countdown>",
                      "<cancelv> the running <timer>", "i'm done, <cancelv> the <timer>", "<timer> can go"]
T["set_alarm"] += ["<alarm> {time}", "<wake> {day} at {time}", "i need to be up at {time} {day}", "<can> set an <alarm> for {time} {day}"]
T["get_weather"] += ["<weather> {day}", "is it going to be <warmq> {day}", "how <warmq> is it outside in {location}",
                     "what's it like outside {day}", "will i need a coat in {location} {day}"]
T["get_time"] += ["what's the time now", "<can> check the time in {location}", "what time is it right now", "time now"]
T["add_to_list"] += ["<addv> {item} to the <listv>", "<buy> {item} later, <addv> it", "<addv> {item} on my <listv>",
                     "<can> put {item} on the <listv>", "i'm out of {item}", "<addv> {item} to the {list} for me",
                     "we have no {item} left", "<addv> {item}"]
T["lock_door"] += ["<lockv> <alldoors>", "<can> <lockv> <alldoors>", "<lockv> <alldoors> for the night",
                   "make sure <alldoors> is locked", "i'm going to bed, <lockv> <alldoors>", "<lockv> up <alldoors>"]
T["unlock_door"] += ["<unlockv> <alldoors>", "<can> <unlockv> <alldoors>", "<unlockv> <alldoors> for the guests",
                     "disengage the lock on the {door}", "<unlockv> the lock of the {door}", "i'm back, <unlockv> <alldoors>",
                     "release the {door}"]
T["chat"] += ["what is the weather like on mars", "do you like the color <thing>", "what music do you like",
              "who is your favorite artist", "how long is a minute", "is it time for bed", "what's a good time to <task>",
              "which door should i paint", "how bright is the sun", "what temperature does water boil at",
              "how loud is a jet engine", "why do lights flicker", "how does a thermostat work",
              "what is a timer", "who invented the light bulb", "is it safe to <task>", "what list of <media> do you like",
              "tell me about the moon", "how cold is space", "why is music relaxing"]
M.update({
    "unlockphr": ["release the lock on", "undo the lock on", "disengage the lock on", "open the lock on",
                  "take the lock off", "remove the lock on"],
    "lockphr": ["engage the lock on", "put the lock on", "set the lock on", "activate the lock on", "turn the lock on"],
    "timeq": ["what time", "what hour", "what's the time", "how late"],
})
M.update({
    "noneed": ["i don't need", "we don't need", "no need for", "i'm done with", "i no longer need"],
    "cantsee": ["i can't see anything in", "i can barely see in", "i can't see in", "i can hardly see in"],
    "again": ["again", "once more", "from where it stopped", "back on"],
})
T["lights_on"] += ["<cantsee> here", "<cantsee> the {room}, <on> the <light>"]
T["lights_off"] += ["<noneed> the <light> in the {room}", "<noneed> the <light>"]
T["cancel_timer"] += ["<noneed> the {duration} <timer>", "<noneed> a <timer> now"]
T["pause_music"] += ["<noneed> the <music> anymore", "<noneed> music in the {room}"]
T["play_music"] += ["<playv> it <again>", "put the <music> <again>", "<playv> {artist} <again>"]
M["howwarm"] += ["how many degrees", "what's the temperature"]
T["unlock_door"] += ["<unlockphr> the {door}", "<can> <unlockphr> the {door}", "<unlockphr> <alldoors>",
                     "i'm outside, <unlockphr> the {door}"]
T["lock_door"] += ["<lockphr> the {door}", "<can> <lockphr> the {door}", "<lockphr> <alldoors>"]
T["get_time"] += ["<timeq> is it", "<timeq> is it in {location}", "do you know <timeq> it is", "<timeq> is it now"]
T["get_temperature"] += ["<howwarm> is it in the {room} now", "<can> tell me <howwarm> it is in the {room}"]


SLOTS_OF = {}  # filled below from the templates


def slot_names(tmpl):
    out, i = [], 0
    while True:
        a = tmpl.find("{", i)
        if a < 0:
            return out
        b = tmpl.index("}", a)
        out.append(tmpl[a + 1:b])
        i = b + 1


# ============================================================ rendering

def typo(r, w):
    if len(w) < 4 or not w.isalpha():
        return w
    k = r.randrange(4)
    i = r.randrange(1, len(w) - 1)
    if k == 0:
        return w[:i] + w[i + 1] + w[i] + w[i + 2:]   # swap
    if k == 1:
        return w[:i] + w[i + 1:]                     # drop
    if k == 2:
        return w[:i] + w[i] + w[i:]                  # double
    return w[:i] + r.choice("aeiounrst") + w[i + 1:] # replace


def expand(r, tmpl):
    """the template with each <name> replaced by one phrase of M[name]"""
    while "<" in tmpl:
        a = tmpl.index("<")
        b = tmpl.index(">", a)
        tmpl = tmpl[:a] + r.choice(M[tmpl[a + 1:b]]) + tmpl[b + 1:]
    return tmpl


def render(r, tmpl, fills, noise=True):
    """the text of a template with its slot fills, and each slot's span text"""
    pre = r.choice(PREFIXES) if noise else ""
    suf = r.choice(SUFFIXES) if noise else ""
    tmpl = expand(r, tmpl)
    parts, slots, i = [], {}, 0
    while True:
        a = tmpl.find("{", i)
        if a < 0:
            parts.append(("t", tmpl[i:]))
            break
        parts.append(("t", tmpl[i:a]))
        b = tmpl.index("}", a)
        name = tmpl[a + 1:b]
        parts.append(("s", name))
        i = b + 1
    out, spans = pre, {}
    for kind, v in parts:
        if kind == "t":
            words = v.split(" ")
            if noise:
                words = [typo(r, w) if r.random() < 0.03 else w for w in words]
            out += " ".join(words)
        else:
            spans[v] = (len(out), len(out) + len(fills[v]))
            out += fills[v]
    out += suf
    # casing: mostly lower, some sentence case, a few shouted or title case (ASCII: the
    # lengths stay, so each slot is still the text between its offsets)
    k = r.random() if noise else 1.0
    if k < 0.12:
        out = out[:1].upper() + out[1:]
    elif k < 0.16:
        out = out.upper()
    elif k < 0.20:
        out = " ".join(w[:1].upper() + w[1:] for w in out.split(" "))
    slots = {n: out[a:b] for n, (a, b) in spans.items()}
    if noise and r.random() < 0.25:
        out += r.choice(["?", ".", "!", ""])
    return out, slots


def macros_of(tmpl):
    out, i = set(), 0
    while True:
        a = tmpl.find("<", i)
        if a < 0:
            return out
        b = tmpl.index(">", a)
        out.add(tmpl[a + 1:b])
        i = b + 1


def split_templates(r, tmpls):
    """train / dev / test, by template: 80 / 10 / 10 percent, at least one each. A held-out
    template is a sentence frame the model never saw; of the seeded draws, the first where every
    word list (<name>) of a held-out frame also occurs in a training frame of the intent is
    taken (a new frame of known words, not an unknown word), else the draw that covers most."""
    n = len(tmpls)
    n_test = max(1, round(n * 0.10))
    n_dev = max(1, round(n * 0.10))
    best, best_miss = None, None
    for _ in range(200):
        idx = list(range(n))
        r.shuffle(idx)
        sp = {"test": idx[:n_test], "dev": idx[n_test:n_test + n_dev], "train": idx[n_test + n_dev:]}
        seen = set().union(*[macros_of(tmpls[i]) for i in sp["train"]])
        miss = sum(len(macros_of(tmpls[i]) - seen) for i in sp["test"] + sp["dev"])
        if best is None or miss < best_miss:
            best, best_miss = sp, miss
        if miss == 0:
            break
    return best


# ============================================================ replies

DEVICE = {"lights_on": "lights", "lights_off": "lights", "set_brightness": "lights", "set_color": "lights",
          "set_temperature": "thermostat", "get_temperature": "temperature", "play_music": "music",
          "pause_music": "music", "set_volume": "volume", "set_timer": "timer", "cancel_timer": "timer",
          "set_alarm": "alarm", "get_weather": "weather", "get_time": "time", "add_to_list": "list",
          "lock_door": "locked", "unlock_door": "unlocked"}


def action_text(intent, slots):
    keys = sorted(slots)
    return intent + "".join(" %s=%s" % (k, slots[k].lower()) for k in keys)


def the_room(slots):
    return ("the %s " % slots["room"].lower()) if "room" in slots else "the "


def reply_for(r, intent, slots):
    return reply_text(r, intent, slots).replace("..", ".")


def reply_text(r, intent, slots):
    s = {k: v.lower() for k, v in slots.items()}
    room = s.get("room")
    inroom = (" in the %s" % room) if room else ""
    if intent == "lights_on":
        return r.choice(["Okay, turning on %slights." % the_room(s), "Sure, %slights are on now." % the_room(s).capitalize(),
                         "Done, I turned on %slights." % the_room(s)])
    if intent == "lights_off":
        return r.choice(["Okay, turning off %slights." % the_room(s), "Done, %slights are off." % the_room(s).capitalize(),
                         "Sure, I switched off %slights." % the_room(s)])
    if intent == "set_brightness":
        return r.choice(["Setting %slights to %s percent." % (the_room(s), s.get("level", "")),
                         "Okay, %slights are at %s percent." % (the_room(s), s.get("level", ""))])
    if intent == "set_color":
        return r.choice(["Okay, making %slights %s." % (the_room(s), s.get("color", "")),
                         "Sure, %slights are %s now." % (the_room(s), s.get("color", ""))])
    if intent == "set_temperature":
        return r.choice(["Setting the thermostat%s to %s degrees." % (inroom, s.get("temperature", "")),
                         "Okay, the thermostat%s is set to %s degrees." % (inroom, s.get("temperature", ""))])
    if intent == "get_temperature":
        return "Let me check the temperature%s." % inroom
    if intent == "play_music":
        what = s.get("artist") or s.get("genre") or "some music"
        return r.choice(["Playing %s%s." % (what, inroom), "Okay, here is %s music%s." % (what, inroom)])
    if intent == "pause_music":
        return r.choice(["Pausing the music%s." % inroom, "Okay, music paused%s." % inroom])
    if intent == "set_volume":
        return r.choice(["Setting the volume%s to %s." % (inroom, s.get("level", "")),
                         "Okay, volume%s at %s." % (inroom, s.get("level", ""))])
    if intent == "set_timer":
        return r.choice(["Timer set for %s." % s.get("duration", ""), "Okay, a %s timer is running." % s.get("duration", "")])
    if intent == "cancel_timer":
        return r.choice(["Okay, I cancelled the timer.", "The timer is cancelled."])
    if intent == "set_alarm":
        when = s.get("time", "") + ((" " + s["day"]) if "day" in s else "")
        return r.choice(["Alarm set for %s." % when, "Okay, I will wake you at %s." % when])
    if intent == "get_weather":
        where = (" in %s" % s["location"]) if "location" in s else ""
        day = (" %s" % s["day"]) if "day" in s else ""
        return "Here is the weather%s%s." % (where, day)
    if intent == "get_time":
        where = (" in %s" % s["location"]) if "location" in s else ""
        return "Here is the time%s." % where
    if intent == "add_to_list":
        return r.choice(["Added %s to your %s." % (s.get("item", ""), s.get("list", "list")),
                         "Okay, %s is on your %s." % (s.get("item", ""), s.get("list", "list"))])
    if intent == "lock_door":
        d = s.get("door", "doors")
        return r.choice(["Okay, the %s is locked." % d, "Done, I locked the %s." % d])
    if intent == "unlock_door":
        d = s.get("door", "door")
        return r.choice(["Okay, the %s is unlocked." % d, "Done, I unlocked the %s." % d])
    raise ValueError(intent)


CHAT_ANSWERS = {
    "how are you": "I'm doing well, thanks for asking.", "tell me a joke": "Why did the lamp go to school? To get a little brighter.",
    "what's your name": "I'm shoal, your home assistant.", "who made you": "I was built by the shoal team.",
    "what can you do": "I can control lights, music, timers, alarms, locks and more.", "good morning": "Good morning! Have a great day.",
    "good night": "Good night, sleep well.", "thank you": "You're welcome.", "thanks a lot": "Happy to help.",
    "hello": "Hello! How can I help?", "hi there": "Hi! What can I do for you?", "goodbye": "Goodbye!",
    "see you later": "See you later!", "are you a robot": "I'm a small language model running on this device.",
    "what is shoal": "I'm a local assistant that runs right here, with no cloud.", "i'm bored": "How about some music? Just ask me to play something.",
    "i'm sad today": "I'm sorry to hear that. Maybe some music would help?", "never mind": "Okay.", "cancel": "Okay, cancelled.",
    "happy birthday": "Happy birthday to you!", "bless you": "Thank you!", "you're awesome": "Thanks, you too!",
    "you're funny": "I try my best.", "are you there": "Yes, I'm here.", "how's it going": "All good here, thanks.",
    "what's up": "Not much, just keeping the house running.",
}
GENERIC = ["I'm not sure about that, but I can help with your lights, music, timers and more.",
           "I can't answer that yet. Try asking me about lights, music or timers.",
           "Sorry, I don't know that one. I'm best at running your home."]


def chat_reply(r, text):
    key = text.lower().strip(" ?.!")
    return CHAT_ANSWERS.get(key, r.choice(GENERIC))


def pseudo_word(r):
    """a made-up word of 1-3 syllables: a value no list has"""
    cons, vows = "bcdfghjklmnprstvwz", "aeiou"
    return "".join(r.choice(cons) + r.choice(vows) + (r.choice(cons) if r.random() < 0.4 else "")
                   for _ in range(r.randint(1, 3)))


def novel_value(r, slot):
    """a slot value unlike the word lists' (for the reply LM: it must copy values, not recall them)"""
    if slot in ("level", "temperature"):
        return str(r.randint(0, 100))
    if slot == "duration":
        return "%d %s" % (r.randint(1, 99), r.choice(["seconds", "minutes", "hours"]))
    if slot == "time":
        h, m = r.randint(1, 12), r.randint(0, 59)
        return r.choice(["%d:%02d %s" % (h, m, r.choice(["am", "pm"])), "%d:%02d" % (h, m),
                         "%s past %d" % (r.choice(["quarter", "half"]), h), "%d o'clock" % h])
    return " ".join(pseudo_word(r) for _ in range(r.choice([1, 1, 2])))


# ============================================================ IoT

MACHINES = ["motor", "pump", "compressor", "fan", "conveyor", "turbine", "mixer", "press", "chiller", "blower"]
IOT_LABELS = ["normal", "bearing_wear", "overheating", "pressure_leak", "sensor_fault"]
IOT_TEMPLATES = [  # {m} machine, {t}/{tb} temperature window/baseline, {v}/{vb} vibration, {p}/{pb} pressure
    "machine: {m} | temperature {t} C (baseline {tb}) | vibration {v} mm/s (baseline {vb}) | pressure {p} bar (baseline {pb})",
    "{m}: temp {t} C base {tb}; vib {v} base {vb}; pres {p} base {pb}",
    "{m} temperature={t} baseline={tb} vibration={v} baseline={vb} pressure={p} baseline={pb}",
    "sensor window for {m}. temperature: {t} (normal {tb}). vibration: {v} (normal {vb}). pressure: {p} (normal {pb}).",
    "{m} | vib {v} / {vb} | temp {t} / {tb} | press {p} / {pb}",
    "readings {m}: pressure {p} bar vs {pb}, temperature {t} C vs {tb}, vibration {v} mm/s vs {vb}",
    "{m} status - t {t} C (ref {tb}) v {v} mm/s (ref {vb}) p {p} bar (ref {pb})",
    "asset {m}: vibration {v} (baseline {vb}), pressure {p} (baseline {pb}), temperature {t} (baseline {tb})",
    "{m} telemetry temperature {t} C expected {tb} C vibration {v} mm/s expected {vb} mm/s pressure {p} bar expected {pb} bar",
    "last three readings on {m}: temp {t} (typ {tb}), vib {v} (typ {vb}), pressure {p} (typ {pb})",
]


def window(r, base, final, noise=0.02):
    """three readings ending at final"""
    a = base * (1 + r.uniform(-noise, noise))
    b = (a + final) / 2 * (1 + r.uniform(-noise, noise))
    return [a, b, final]


def fmt(vals, d=1):
    return " ".join("%.*f" % (d, v) for v in vals)


def iot_example(r, kind):
    tmpl = r.choice(IOT_TEMPLATES)
    label = r.choice(IOT_LABELS)
    m = "%s %d" % (kind, r.randint(1, 12))
    tb, vb, pb = r.uniform(40, 90), r.uniform(0.5, 4.0), r.uniform(1.0, 8.0)
    t = tb * r.uniform(0.95, 1.05)
    v = vb * r.uniform(0.9, 1.1)
    p = pb * r.uniform(0.95, 1.05)
    tw, vw, pw = window(r, tb, t), window(r, vb, v, 0.05), window(r, pb, p)
    expl = "All readings on %s are within their normal range." % m
    if label == "bearing_wear":
        ratio = r.uniform(2.0, 6.0)
        vw = window(r, vb, vb * ratio, 0.05)
        expl = "Vibration on %s is %.1fx its baseline: likely bearing wear." % (m, ratio)
    elif label == "overheating":
        ratio = r.uniform(1.25, 1.8)
        tw = window(r, tb, tb * ratio)
        expl = "Temperature on %s is %.1fx its baseline: likely overheating." % (m, ratio)
    elif label == "pressure_leak":
        ratio = r.uniform(0.25, 0.7)
        pw = window(r, pb, pb * ratio)
        expl = "Pressure on %s is down to %.1fx its baseline: likely a pressure leak." % (m, ratio)
    elif label == "sensor_fault":
        k = r.randrange(3)
        if k == 0:   # a sensor reading zero (dead) while the machine runs
            which = r.choice(["temperature", "pressure"])
            if which == "temperature":
                tw = [tw[0], tw[1], 0.0]
            else:
                pw = [pw[0], pw[1], 0.0]
            expl = "The %s sensor on %s reads zero: likely a sensor fault." % (which, m)
        elif k == 1:  # impossible negative value
            tw = [tw[0], tw[1], -r.uniform(100, 300)]
            expl = "The temperature sensor on %s reports an impossible value: likely a sensor fault." % m
        else:         # a reading frozen at exactly the same value
            v0 = round(vw[0], 1)
            vw = [v0, v0, v0]
            tw = [round(tw[0], 1)] * 3
            expl = "The sensors on %s are stuck at the same values: likely a sensor fault." % m
    # "normal" windows are never frozen: keep a little movement
    text = tmpl.format(m=m, t=fmt(tw), tb="%.1f" % tb, v=fmt(vw, 2), vb="%.2f" % vb, p=fmt(pw, 2), pb="%.2f" % pb)
    text += " | " + iot_changes({"temperature": (tw, tb), "vibration": (vw, vb), "pressure": (pw, pb)})
    return {"text": text, "intent": label, "explanation": expl, "machine": m,
            "summary": iot_summary({"temperature": (tw, tb), "vibration": (vw, vb), "pressure": (pw, pb)})}


def iot_changes(readings):
    """the serializer's last part: each reading's change against its baseline, in whole
    percent ("change: temperature +1% +0% +2%, ..."); a small encoder trained from scratch does not
    learn division from digit tokens, so the window carries the ratios it is judged on"""
    parts = []
    for name in ("temperature", "vibration", "pressure"):
        vals, base = readings[name]
        parts.append(name + " " + " ".join("%+d%%" % round(100 * (v - base) / base) for v in vals))
    return "change: " + ", ".join(parts)


def iot_summary(readings):
    """what the IoT pipeline computes from a window before the reply LM writes the explanation:
    the sensor that stands out and its last reading over its baseline ("frozen": three equal
    readings; otherwise a reading at or below zero, else the largest deviation either way)"""
    import math
    for name in ("vibration", "temperature", "pressure"):
        vals, base = readings[name]
        if round(vals[0], 2) == round(vals[1], 2) == round(vals[2], 2):
            return {"sensor": name, "ratio": round(vals[2] / base, 1), "frozen": True}
    best, dev = None, -1.0
    for name in ("temperature", "vibration", "pressure"):
        vals, base = readings[name]
        ratio = vals[2] / base
        d = math.inf if ratio <= 0 else abs(math.log(ratio))
        if d > dev:
            best, dev = (name, ratio), d
    return {"sensor": best[0], "ratio": round(best[1], 1), "frozen": False}


def iot_prompt(ex):
    """what the IoT pipeline step gives the reply LM: the label, the machine, the finding"""
    sm = ex["summary"]
    return "iot %s machine=%s sensor=%s ratio=%.1f%s" % (ex["intent"], ex["machine"], sm["sensor"], sm["ratio"],
                                                       " frozen" if sm["frozen"] else "")


# ============================================================ main

def main():
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    out = sys.argv[1]
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 1
    r = random.Random(seed)
    splits = {"train": [], "dev": [], "test": []}
    per_template = {"train": 60, "dev": 12, "test": 12}
    for intent in sorted(T):
        tmpls = T[intent]
        sp = split_templates(r, tmpls)
        for name, idx in sp.items():
            for ti in idx:
                tmpl = tmpls[ti]
                names = slot_names(tmpl)
                n = per_template[name] * (2 if intent == "chat" and name == "train" else 1)
                if not names and "<" not in tmpl:
                    n = max(8, n // 3)
                for k in range(n):
                    fills = {s: FILLERS[s](r) for s in names}
                    text, slots = render(r, tmpl, fills)
                    group = "%s|%s" % (intent, "|".join("%s=%s" % (a, fills[a]) for a in sorted(fills))) if intent != "chat" else "chat|%d|%d" % (ti, k)
                    splits[name].append({"text": text, "intent": intent, "slots": slots, "group": group,
                                         "template": "%s/%d" % (intent, ti)})
    for name in splits:
        r.shuffle(splits[name])
    os.makedirs(os.path.join(out, "assistant"), exist_ok=True)
    for name, rows in splits.items():
        with open(os.path.join(out, "assistant", name + ".jsonl"), "w") as f:
            for x in rows:
                f.write(json.dumps(x) + "\n")

    # replies: actions and chat lines of each split (the LM's split follows the assistant's)
    os.makedirs(os.path.join(out, "replies"), exist_ok=True)
    iot = {"train": [], "dev": [], "test": []}
    # IoT: split by machine kind (a test machine is one the model never saw); every
    # serialization format is in every split (a gateway's format is fixed, its machines vary)
    isp = split_templates(r, MACHINES)
    for name, idx in isp.items():
        for ti in idx:
            for k in range({"train": 2400, "dev": 300, "test": 300}[name]):
                ex = iot_example(r, MACHINES[ti])
                ex["template"] = "iot/%s" % MACHINES[ti]
                ex["prompt"] = iot_prompt(ex)
                iot[name].append(ex)
        r.shuffle(iot[name])
    for name, rows in splits.items():
        with open(os.path.join(out, "replies", name + ".jsonl"), "w") as f:
            seen = set()
            for x in rows:
                if x["intent"] == "chat":
                    p, c = x["text"], chat_reply(r, x["text"])
                else:
                    p, c = action_text(x["intent"], x["slots"]), reply_for(r, x["intent"], x["slots"])
                if (p, name) in seen and name != "train":
                    continue
                seen.add((p, name))
                f.write(json.dumps({"prompt": p, "completion": c, "intent": x["intent"], "slots": x["slots"]}) + "\n")
                if name == "train" and x["slots"]:
                    # the same action with made-up values: the LM learns to copy a value from the
                    # prompt into the reply instead of recalling the values it has seen
                    sl = {k: novel_value(r, k) for k in x["slots"]}
                    f.write(json.dumps({"prompt": action_text(x["intent"], sl), "completion": reply_for(r, x["intent"], sl),
                                        "intent": x["intent"], "slots": sl, "augmented": True}) + "\n")
            for x in iot[name][: {"train": 3000, "dev": 200, "test": 200}[name]]:
                f.write(json.dumps({"prompt": iot_prompt(x), "completion": x["explanation"], "intent": "iot"}) + "\n")
                if name == "train":
                    # the same finding on a made-up machine kind: dev and test machines are kinds
                    # the training never has, so the LM must copy the name from the prompt
                    kind = pseudo_word(r)
                    y = dict(x, machine=x["machine"].replace(x["machine"].split()[0], kind, 1))
                    f.write(json.dumps({"prompt": iot_prompt(y), "completion": x["explanation"].replace(x["machine"], y["machine"]),
                                        "intent": "iot", "augmented": True}) + "\n")
    os.makedirs(os.path.join(out, "iot"), exist_ok=True)
    for name, rows in iot.items():
        with open(os.path.join(out, "iot", name + ".jsonl"), "w") as f:
            for x in rows:
                f.write(json.dumps(x) + "\n")
    for d in ("assistant", "replies", "iot"):
        counts = []
        for name in ("train", "dev", "test"):
            with open(os.path.join(out, d, name + ".jsonl")) as f:
                counts.append(sum(1 for _ in f))
        print("gen_data: %s: train %d, dev %d, test %d" % (d, *counts))


if __name__ == "__main__":
    main()
