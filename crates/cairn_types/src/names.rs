//! Display names for runs: `adjective-noun-N`, N being the project's run sequence number.
//! The word lists are our own: landscape words, since a cairn marks a trail.

const ADJECTIVES: &[&str] = &[
    "amber",
    "ancient",
    "autumn",
    "bold",
    "brisk",
    "bright",
    "calm",
    "clear",
    "cobalt",
    "cold",
    "crimson",
    "crisp",
    "dappled",
    "daring",
    "deep",
    "dusky",
    "eager",
    "early",
    "easy",
    "fair",
    "fearless",
    "fleet",
    "foggy",
    "gentle",
    "gilded",
    "glad",
    "golden",
    "grand",
    "green",
    "hardy",
    "hazy",
    "hidden",
    "high",
    "hollow",
    "icy",
    "jade",
    "keen",
    "lively",
    "lone",
    "lucid",
    "lunar",
    "mellow",
    "misty",
    "mossy",
    "nimble",
    "noble",
    "northern",
    "patient",
    "placid",
    "polar",
    "proud",
    "quiet",
    "rapid",
    "restless",
    "rising",
    "rocky",
    "rugged",
    "rustic",
    "sandy",
    "serene",
    "silent",
    "silver",
    "slate",
    "snowy",
    "solar",
    "sturdy",
    "sunny",
    "swift",
    "tall",
    "tidal",
    "twilight",
    "vast",
    "velvet",
    "vivid",
    "wandering",
    "warm",
    "wild",
    "windy",
    "winter",
    "wise",
];

const NOUNS: &[&str] = &[
    "aurora", "basin", "bay", "beacon", "bluff", "boulder", "brook", "butte", "canyon", "cape", "cascade", "cavern", "cedar", "cliff", "cloud", "coast", "comet", "cove", "crag",
    "creek", "crest", "delta", "dune", "dusk", "ember", "estuary", "falls", "fern", "field", "fjord", "forest", "frost", "glacier", "glade", "gorge", "grove", "harbor", "heath",
    "horizon", "island", "lagoon", "lake", "ledge", "marsh", "meadow", "mesa", "moon", "moraine", "moss", "oasis", "outcrop", "pass", "peak", "pine", "plateau", "prairie",
    "rapids", "ravine", "reef", "ridge", "river", "shore", "sky", "slope", "spring", "star", "stone", "summit", "sunrise", "tarn", "thicket", "tide", "trail", "tundra", "valley",
    "vista", "willow", "wind",
];

/// A display name for the run with sequence number `seq` in its project.
pub fn display_name(seq: u64) -> String {
    let mut rng = fastrand::Rng::new();
    display_name_with(&mut rng, seq)
}

pub fn display_name_with(rng: &mut fastrand::Rng, seq: u64) -> String {
    let adjective = ADJECTIVES[rng.usize(..ADJECTIVES.len())];
    let noun = NOUNS[rng.usize(..NOUNS.len())];
    format!("{adjective}-{noun}-{seq}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_have_the_form_adjective_noun_n() {
        for seq in [1, 7, 1234] {
            let name = display_name(seq);
            let parts: Vec<&str> = name.split('-').collect();
            assert_eq!(parts.len(), 3, "{name}");
            assert!(ADJECTIVES.contains(&parts[0]), "{name}");
            assert!(NOUNS.contains(&parts[1]), "{name}");
            assert_eq!(parts[2], seq.to_string());
        }
    }

    #[test]
    fn word_lists_are_clean() {
        for word in ADJECTIVES.iter().chain(NOUNS) {
            assert!(word.bytes().all(|b| b.is_ascii_lowercase()), "{word}");
        }
        let unique: std::collections::HashSet<_> = ADJECTIVES.iter().chain(NOUNS).collect();
        assert_eq!(unique.len(), ADJECTIVES.len() + NOUNS.len());
    }
}
