//! The connection the services open: small frames, unless the URL says otherwise.

use crate::support::AMQP_URL;
use checkout_messaging::{FRAME_MAX, connect};
use lapin::types::ShortString;

#[tokio::test]
async fn a_connection_proposes_small_frames_and_the_url_can_ask_for_others() {
    // RabbitMQ's own default is 128 KiB: lapin's buffers would take 8 MiB.
    let default = connect(AMQP_URL, "frame-size-test").await.expect("connect");
    assert_eq!(default.configuration().frame_max(), FRAME_MAX);
    let _ = default.close(200, ShortString::from("done")).await;

    let url = format!("{AMQP_URL}?frame_max=65536");
    let asked = connect(&url, "frame-size-test").await.expect("connect");
    assert_eq!(asked.configuration().frame_max(), 65_536);
    let _ = asked.close(200, ShortString::from("done")).await;
}
