//! Test guest: a plain `wasi:cli/command` component. It is valid WebAssembly and a valid
//! component, but exports neither Courier world, so the host must refuse it by name.

fn main() {
    println!("I am a command, not a Courier plugin");
}
