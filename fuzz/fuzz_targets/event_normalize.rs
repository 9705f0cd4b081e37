//! Event normalization from raw bytes, through both entries: the JSON-lines reader (line
//! splitting, the oversize check, then `event::normalize` per line) and the single-message entry
//! the Redis sources use (`Intake::accept`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade::sources::Intake;
use palisade::sources::jsonl::JsonlReader;

fuzz_target!(|data: &[u8]| {
    // No dead-letter sink: rejects are only counted, which is all a fuzz run needs.
    let mut intake = Intake::new(None);
    let _ = intake.accept(&"stream", data);

    let mut reader = JsonlReader::new(std::io::Cursor::new(data.to_vec()));
    while let Ok(Some(line)) = reader.next_line() {
        let _ = intake.accept_line(&"events.jsonl", &line);
    }
});
