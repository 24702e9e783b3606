use super::*;
use serde_json::json;

/// A board whose draws are `rolls`, in turn, round and round.
fn board(service: &'static str, offered: &[Switch], rolls: Vec<u64>) -> Faults {
    let next = AtomicU64::new(0);
    let random: Random = Arc::new(move || {
        let i = next.fetch_add(1, Ordering::Relaxed) as usize;
        rolls[i % rolls.len()]
    });
    let faults = Faults::with_random(service, true, random);
    faults.offer(offered);
    faults
}

fn change(value: serde_json::Value) -> Change {
    serde_json::from_value(value).expect("a change")
}

fn fields(errors: Vec<FieldError>) -> Vec<String> {
    errors.into_iter().map(|e| e.field).collect()
}

#[test]
fn the_document_lists_the_offered_switches_with_their_parameters_in_order() {
    let payment = board(
        "payment",
        &[
            Switch::FailPermanent,
            Switch::Decline,
            Switch::FailTransient,
        ],
        vec![0],
    );
    let document = serde_json::to_value(payment.document()).expect("serializable");
    let names: Vec<&str> = document["switches"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| s["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(document["service"], "payment");
    assert_eq!(
        names,
        [
            "decline",
            "fail_transient",
            "fail_permanent",
            "delay",
            "crash_before_ack"
        ]
    );
    let switches = &document["switches"];
    assert_eq!(switches[0]["on"], false);
    assert_eq!(switches[0]["percent"], 100);
    assert_eq!(switches[2]["pattern"], "fail-*");
    assert_eq!(switches[3]["latency_ms"], 500);
    assert_eq!(
        switches[4].as_object().expect("an object").len(),
        3,
        "crash_before_ack takes no parameter: {}",
        switches[4]
    );
    let order = board("order", &[], vec![0]).document();
    assert_eq!(order.switches.len(), 2, "delay and crash_before_ack only");
}

#[test]
fn a_percentage_switch_strikes_for_that_share_of_draws() {
    let faults = board("payment", &[Switch::Decline], (0..100).collect());
    assert!(!faults.strikes(Switch::Decline), "off: never");
    faults
        .apply(&change(
            json!({"name": "decline", "on": true, "percent": 30}),
        ))
        .expect("valid");
    let strikes = (0..1000)
        .filter(|_| faults.strikes(Switch::Decline))
        .count();
    assert_eq!(strikes, 300, "30 of every 100 draws");
    for (percent, roll, expected) in [
        (0, 0, false),
        (100, 99, true),
        (1, 0, true),
        (1, 1, false),
        (50, 149, true),
        (50, 150, false),
    ] {
        assert_eq!(within(percent, roll), expected, "{percent}% with {roll}");
    }
}

#[test]
fn the_pattern_switch_strikes_on_matching_subjects_only() {
    let faults = board("inventory", &[Switch::FailPermanent], vec![0]);
    assert!(!faults.strikes_on(Switch::FailPermanent, "fail-1"), "off");
    faults
        .apply(&change(
            json!({"name": "fail_permanent", "on": true, "pattern": "vip-*"}),
        ))
        .expect("valid");
    assert!(faults.strikes_on(Switch::FailPermanent, "vip-7"));
    assert!(!faults.strikes_on(Switch::FailPermanent, "fail-1"));
    assert!(!faults.strikes(Switch::FailPermanent), "takes a subject");
}

#[test]
fn omitted_fields_keep_their_values() {
    let faults = board("payment", &[], vec![0]);
    faults
        .apply(&change(json!({"name": "delay", "latency_ms": 20})))
        .expect("valid");
    assert_eq!(faults.latency(), None, "still off");
    let document = faults
        .apply(&change(json!({"name": "delay", "on": true})))
        .expect("valid");
    assert_eq!(document.switches[0].latency_ms, Some(20));
    assert_eq!(faults.latency(), Some(Duration::from_millis(20)));
    faults
        .apply(&change(json!({"name": "delay", "on": false})))
        .expect("valid");
    assert_eq!(faults.latency(), None);
}

#[test]
fn an_invalid_change_names_its_fields_and_changes_nothing() {
    let faults = board(
        "payment",
        &[Switch::Decline, Switch::FailPermanent],
        vec![0],
    );
    let before = faults.document();
    for (body, expected) in [
        (json!({"name": "explode", "on": true}), vec!["name"]),
        (json!({"name": "smtp_refuse", "on": true}), vec!["name"]),
        (
            json!({"name": "decline", "on": true, "percent": 101}),
            vec!["percent"],
        ),
        (json!({"name": "decline", "percent": -1}), vec!["percent"]),
        (json!({"name": "decline", "pattern": "x*"}), vec!["pattern"]),
        (
            json!({"name": "crash_before_ack", "on": true, "percent": 5, "latency_ms": 1}),
            vec!["percent", "latency_ms"],
        ),
        (
            json!({"name": "delay", "latency_ms": 30_001}),
            vec!["latency_ms"],
        ),
        (
            json!({"name": "fail_permanent", "pattern": ""}),
            vec!["pattern"],
        ),
        (
            json!({"name": "fail_permanent", "pattern": "a\u{0}b"}),
            vec!["pattern"],
        ),
        (
            json!({"name": "fail_permanent", "pattern": "x".repeat(201)}),
            vec!["pattern"],
        ),
    ] {
        let errors = faults
            .apply(&change(body.clone()))
            .expect_err("must be refused");
        assert_eq!(fields(errors), expected, "{body}");
    }
    assert_eq!(faults.document(), before, "nothing changed");
    let unknown = serde_json::from_value::<Change>(json!({"name": "delay", "speed": 1}));
    assert!(unknown.is_err(), "unknown fields are refused");
}

#[test]
fn a_disabled_board_never_strikes() {
    let faults = Faults::with_random("payment", false, Arc::new(|| 0));
    faults.offer(&[Switch::Decline]);
    faults
        .apply(&change(json!({"name": "decline", "on": true})))
        .expect("the state changes");
    assert!(!faults.is_enabled());
    assert!(!faults.strikes(Switch::Decline));
    assert!(!Faults::default().strikes(Switch::CrashBeforeAck));
    assert!(Faults::default().document().switches.is_empty());
}

#[test]
fn every_switch_has_a_name_that_reads_back() {
    for switch in Switch::ALL {
        assert_eq!(Switch::from_name(switch.name()), Some(switch));
        assert!(switch.description().ends_with('.'), "{}", switch.name());
    }
    assert_eq!(Switch::from_name("Decline"), None);
}
