//! The `hqflow` binary: everything lives in the library's `cli` module.

#[global_allocator]
static ALLOCATOR: hqflow::allocator::Allocator = hqflow::allocator::Allocator;

fn main() -> std::process::ExitCode {
    hqflow::allocator::tune(hqflow::allocator::Workload::Queries);
    hqflow::threads::pin();
    hqflow::cli::main()
}
