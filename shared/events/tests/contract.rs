//! The checked-in fixtures are the contract: every event type and version
//! has one, and each is exactly what the payload types read and write.

use checkout_events::SUBSCRIPTIONS;
use checkout_events::fixtures::{FIXTURES, claimed_by};
use std::collections::BTreeSet;

#[test]
fn every_fixture_file_is_listed_and_every_event_has_one() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
    let files: BTreeSet<String> = std::fs::read_dir(dir)
        .expect("the fixtures directory")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    let listed: BTreeSet<String> = FIXTURES
        .iter()
        .map(|f| format!("{}.v{}.json", f.event_type, f.version))
        .collect();
    assert_eq!(files, listed);
    for subscription in SUBSCRIPTIONS {
        for key in subscription.routing_keys {
            assert!(
                FIXTURES.iter().any(|f| f.routing_key == *key),
                "{key}, bound for {}, has no fixture",
                subscription.service
            );
        }
    }
}

#[test]
fn each_fixture_decodes_into_its_type_and_says_everything_it_writes() {
    for fixture in FIXTURES {
        let name = format!("{}.v{}", fixture.event_type, fixture.version);
        let envelope = fixture.envelope_with(|_| {});
        assert_eq!(envelope.event_type, fixture.event_type, "{name}");
        assert_eq!(envelope.version, fixture.version, "{name}");
        let decoded = (fixture.decode)(&envelope).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Written back, the payload is the fixture's: no field the type
        // writes is missing from the contract, none is extra.
        assert_eq!(decoded, fixture.value()["data"], "{name}");

        let extended = fixture.envelope_with_unknown_fields(|_| {});
        let decoded = (fixture.decode)(&extended).unwrap_or_else(|e| panic!("{name}+: {e}"));
        assert_eq!(
            decoded,
            fixture.value()["data"],
            "{name} with unknown fields"
        );
    }
}

#[test]
fn every_service_claims_what_its_queue_is_bound_to() {
    let claimed = |service| -> Vec<String> {
        claimed_by(service)
            .iter()
            .map(|f| format!("{}.v{}", f.event_type, f.version))
            .collect()
    };
    assert_eq!(
        claimed("order"),
        [
            "PaymentCaptured.v1",
            "PaymentFailed.v1",
            "PaymentRefunded.v1",
            "InventoryReserved.v1",
            "InventoryFailed.v1",
            "InventoryReleased.v1",
            "ProductUpdated.v1"
        ]
    );
    // Payment gets the card token with PaymentRequested, and OrderCreated
    // no longer: Inventory reads both versions of it, side by side.
    assert_eq!(
        claimed("payment"),
        ["PaymentRequested.v1", "OrderCancelled.v1"]
    );
    assert_eq!(
        claimed("inventory"),
        [
            "OrderCreated.v1",
            "OrderCreated.v2",
            "OrderConfirmed.v1",
            "OrderCancelled.v1"
        ]
    );
    assert_eq!(claimed("email"), ["OrderConfirmed.v1", "OrderCancelled.v1"]);
}

#[test]
fn every_fixture_comes_from_the_owner_of_its_type() {
    for fixture in FIXTURES {
        let envelope = fixture.envelope_with(|_| {});
        let owner = checkout_events::owner_of(&envelope.event_type)
            .unwrap_or_else(|| panic!("{} has no owner", envelope.event_type));
        assert_eq!(envelope.source, owner.source, "{}", envelope.event_type);
    }
}
