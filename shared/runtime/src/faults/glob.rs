//! The patterns of `fail_permanent`: `*` stands for any run of characters
//! (none included); every other character stands for itself. No `?`, no
//! classes, no escapes — an operator types `fail-*` or `*-vip`, and a
//! customer id never contains a `*`.

/// Whether `subject` matches `pattern` as a whole.
///
/// Greedy matching with one backtrack point (the last `*`): linear in
/// practice, and at worst `pattern × subject` steps — no exponential
/// blow-up however many stars a pattern has.
pub fn glob_matches(pattern: &str, subject: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let subject: Vec<char> = subject.chars().collect();
    let (mut p, mut s) = (0, 0);
    // Where the last star was, and the subject position it last absorbed up to.
    let mut star: Option<(usize, usize)> = None;
    while s < subject.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, s));
                p += 1;
            }
            Some(&c) if c == subject[s] => {
                p += 1;
                s += 1;
            }
            _ => match star {
                // Let the last star absorb one more character and try again.
                Some((star_p, star_s)) => {
                    p = star_p + 1;
                    s = star_s + 1;
                    star = Some((star_p, star_s + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_matches_any_run_of_characters() {
        for (pattern, subject, expected) in [
            ("fail-*", "fail-42", true),
            ("fail-*", "fail-", true),
            ("fail-*", "c-42", false),
            ("fail-*", "xfail-42", false),
            ("*", "", true),
            ("*", "anything", true),
            ("*-vip", "c-7-vip", true),
            ("*-vip", "c-7-vip-not", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "acb", false),
            ("c-42", "c-42", true),
            ("c-42", "c-420", false),
            ("", "", true),
            ("", "x", false),
            ("**", "x", true),
            ("ü*", "über", true),
        ] {
            assert_eq!(
                glob_matches(pattern, subject),
                expected,
                "{pattern:?} against {subject:?}"
            );
        }
    }

    #[test]
    fn many_stars_do_not_blow_up() {
        let pattern = "*a".repeat(50);
        let subject = "a".repeat(49);
        let started = std::time::Instant::now();
        assert!(!glob_matches(&pattern, &subject));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
