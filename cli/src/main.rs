fn main() {
    println!("manage: tenant CLI for natsd (not built yet)");
}
