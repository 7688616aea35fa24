//! Friendly generated project names, such as `calm-otter-4821`.

use rand::Rng;

const ADJECTIVES: &[&str] = &[
    "amber", "bold", "brave", "bright", "brisk", "calm", "clever", "cosmic", "crisp", "eager",
    "fancy", "gentle", "glad", "golden", "happy", "jolly", "keen", "lively", "lucky", "mellow",
    "merry", "mighty", "nimble", "noble", "plucky", "proud", "quick", "quiet", "rapid", "shiny",
    "silver", "snappy", "sunny", "swift", "tidy", "vivid", "witty", "zesty",
];

const NOUNS: &[&str] = &[
    "badger", "beaver", "bison", "condor", "coyote", "crane", "dolphin", "falcon", "ferret",
    "finch", "gecko", "heron", "ibex", "jackal", "koala", "lemur", "lynx", "marmot", "moose",
    "narwhal", "ocelot", "otter", "panda", "pelican", "puffin", "quokka", "raven", "salmon",
    "seal", "sparrow", "tapir", "toucan", "walrus", "wombat", "yak", "zebra",
];

/// `{adjective}-{animal}-{4 digits}`.
pub(crate) fn friendly_name() -> String {
    let mut rng = rand::thread_rng();
    let adjective = ADJECTIVES[rng.gen_range(0..ADJECTIVES.len())];
    let noun = NOUNS[rng.gen_range(0..NOUNS.len())];
    let number: u16 = rng.gen_range(1000..10000);
    format!("{adjective}-{noun}-{number}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_words_and_digits() {
        for _ in 0..50 {
            let name = friendly_name();
            let parts: Vec<&str> = name.split('-').collect();
            assert_eq!(parts.len(), 3, "{name}");
            assert!(ADJECTIVES.contains(&parts[0]));
            assert!(NOUNS.contains(&parts[1]));
            assert_eq!(parts[2].len(), 4);
            assert!(name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        }
    }
}
