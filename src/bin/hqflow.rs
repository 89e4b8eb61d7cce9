//! The `hqflow` binary: everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    hqflow::allocator::tune();
    hqflow::cli::main()
}
