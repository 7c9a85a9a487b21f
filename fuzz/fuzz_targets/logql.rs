#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| logpipe_server::fuzzing::logql(data));
