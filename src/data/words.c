/* words.c: the word lists of words.h. */
#include "data/words.h"

#define LIST(name, ...)                                                                     \
    static const char *const name##_w[] = {__VA_ARGS__};                                    \
    const dsv4_wordlist dsv4_words_##name = {name##_w, sizeof name##_w / sizeof name##_w[0]}

LIST(names, "Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack", "Karen", "Leo",
     "Maria", "Nathan", "Olivia", "Peter", "Quinn", "Rachel", "Sam", "Tina", "Victor", "Wendy", "Xavier", "Yvonne",
     "Zoe", "Adam", "Bella", "Chris", "Diana", "Ethan", "Fiona", "George", "Hannah", "Ivan", "Julia", "Kevin", "Laura",
     "Mike", "Nina", "Oscar", "Paula", "Robert", "Sophie", "Tom", "Uma", "Vera", "Walter", "Amy", "Ben", "Clara",
     "Daniel", "Eva", "Felix", "Helen", "Isaac", "Jane", "Kate", "Lucas", "Mark", "Nora", "Omar", "Rosa", "Simon",
     "Theo", "Ursula", "Anna", "Brian", "Chloe", "Dylan", "Ellen");

LIST(cities, "Paris", "London", "Berlin", "Madrid", "Rome", "Vienna", "Prague", "Warsaw", "Lisbon", "Dublin",
     "Oslo", "Stockholm", "Helsinki", "Athens", "Cairo", "Nairobi", "Lagos", "Tokyo", "Osaka", "Seoul", "Beijing",
     "Shanghai", "Delhi", "Mumbai", "Bangkok", "Jakarta", "Manila", "Sydney", "Melbourne", "Auckland", "Toronto",
     "Montreal", "Chicago", "Boston", "Denver", "Seattle", "Houston", "Miami", "Lima", "Bogota", "Santiago",
     "Havana", "Istanbul", "Moscow", "Kyiv", "Zurich", "Geneva", "Brussels", "Amsterdam", "Hamburg", "Munich",
     "Milan", "Naples", "Venice", "Florence", "Barcelona", "Valencia", "Porto", "Edinburgh", "Glasgow");

LIST(items, "lamp", "chair", "table", "kettle", "teapot", "blanket", "pillow", "mirror", "clock", "basket", "candle",
     "vase", "rug", "towel", "mug", "plate", "bowl", "spoon", "fork", "knife", "pan", "notebook", "pencil", "backpack",
     "umbrella", "scarf", "hat", "glove", "jacket", "sweater", "bottle", "bucket", "ladder", "hammer", "shovel",
     "helmet", "bicycle", "radio", "camera", "guitar");

LIST(departments, "Sales", "Marketing", "Finance", "Research", "Support", "Legal", "Design", "Engineering",
     "Operations", "Security", "Training", "Logistics");

LIST(colors, "red", "blue", "green", "yellow", "black", "white", "orange", "purple", "silver", "golden", "brown",
     "pink", "gray", "violet");

LIST(objects, "door", "box", "gate", "car", "house", "safe", "boat", "book", "lamp", "chest", "bag", "tower",
     "bridge", "cup", "window", "garden", "clock", "train", "bottle", "drawer", "cabinet", "tent", "piano", "kite");

LIST(secrets, "pass code", "secret number", "access code", "lock code", "magic number", "lucky number");

LIST(weather, "sunny", "cloudy", "rainy", "windy", "snowy", "foggy", "stormy", "clear");
