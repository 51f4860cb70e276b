//! `#[proactor::main]` and `#[proactor::test]`, re-exported by `proactor` (feature `macros`, on by
//! default). `main` turns an `async fn` into a plain one that builds a proactor and runs the body
//! with `block_on`; `test` runs its body once per driver, in one of three forms (an `async fn`,
//! a `fn(p: &Proactor)`, a `fn(driver: DriverChoice | &str)`). See the attributes' own docs in
//! `proactor`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, FnArg, ItemFn, Lit, LitStr, MetaNameValue, Token, Type};

/// What the attribute's arguments asked for.
#[derive(Default)]
struct Options {
    /// `driver = "uring" | "epoll" | "auto"` (for `test`, also `"both"`, the default).
    driver: Option<(String, Span)>,
    /// `entries = N`: the io_uring ring size.
    entries: Option<(u32, Span)>,
    /// `uring_only = "why"` or `epoll_only = "why"` (test only): the driver the body runs on,
    /// and the reason printed for the other, which is skipped.
    only: Option<(&'static str, LitStr)>,
}

fn parse_options(args: TokenStream, test: bool) -> syn::Result<Options> {
    let allowed: &[&str] =
        if test { &["both", "uring", "epoll", "auto"] } else { &["uring", "epoll", "auto"] };
    let pairs = Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse(args)?;
    let mut opts = Options::default();
    for pair in pairs {
        let name = pair.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
        let lit = match &pair.value {
            Expr::Lit(ExprLit { lit, .. }) => lit.clone(),
            other => return Err(syn::Error::new(other.span(), "expected a literal")),
        };
        match (name.as_str(), lit) {
            ("driver", Lit::Str(s)) => {
                let v = s.value();
                if !allowed.contains(&v.as_str()) {
                    let msg = format!("driver must be one of {}", allowed.join(", "));
                    return Err(syn::Error::new(s.span(), msg));
                }
                opts.driver = Some((v, s.span()));
            }
            ("entries", Lit::Int(n)) => opts.entries = Some((n.base10_parse()?, n.span())),
            (only @ ("uring_only" | "epoll_only"), Lit::Str(why)) if test => {
                if why.value().trim().is_empty() {
                    let msg = "say why the other driver cannot run this test";
                    return Err(syn::Error::new(why.span(), msg));
                }
                if opts.only.is_some() {
                    let msg = "give one of `uring_only` and `epoll_only`";
                    return Err(syn::Error::new(pair.path.span(), msg));
                }
                let driver = if only == "uring_only" { "uring" } else { "epoll" };
                opts.only = Some((driver, why));
            }
            ("threads", lit) => {
                return Err(syn::Error::new(
                    lit.span(),
                    "`threads` is not an option: a proactor runs on one thread; to serve on \
                     several, use proactor::threads::serve from main",
                ))
            }
            (_, lit) => {
                let msg = if test {
                    "unknown option: expected `driver = \"...\"`, `entries = N`, \
                     `uring_only = \"why\"` or `epoll_only = \"why\"`"
                } else {
                    "unknown option: expected `driver = \"...\"` or `entries = N`"
                };
                return Err(syn::Error::new(
                    lit.span().join(pair.path.span()).unwrap_or(lit.span()),
                    msg,
                ));
            }
        }
    }
    if let (Some((_, span)), Some(_)) = (&opts.driver, &opts.only) {
        let msg = "`driver` and `uring_only`/`epoll_only` both pick the driver: give one";
        return Err(syn::Error::new(*span, msg));
    }
    Ok(opts)
}

fn driver_choice(name: &str) -> Tokens {
    match name {
        "uring" => quote!(::proactor::DriverChoice::Uring),
        "epoll" => quote!(::proactor::DriverChoice::Epoll),
        _ => quote!(::proactor::DriverChoice::Auto),
    }
}

fn entries_tokens(entries: Option<(u32, Span)>) -> Tokens {
    match entries {
        Some((n, _)) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    }
}

/// What a test body is given, decided by the form of its signature.
enum Form {
    /// `async fn name()`: run with `block_on` on a fresh proactor.
    Async,
    /// `fn name(p: &Proactor)`: called with a fresh proactor.
    Proactor,
    /// `fn name(driver: DriverChoice)`: called with the choice; builds what it needs itself.
    Choice,
    /// `fn name(driver: &str)`: called with the driver's `--driver` / `PROACTOR_DRIVER` name.
    Name,
}

const FORMS: &str = "a #[proactor::test] is `async fn name()`, `fn name(p: &Proactor)`, \
                     `fn name(driver: DriverChoice)` or `fn name(driver: &str)`";

/// The last segment of a type path (`proactor::Proactor` -> `Proactor`).
fn last_ident(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.to_string()),
        Type::Paren(p) => last_ident(&p.elem),
        _ => None,
    }
}

fn test_form(f: &ItemFn) -> syn::Result<Form> {
    let inputs: Vec<&FnArg> = f.sig.inputs.iter().collect();
    if f.sig.asyncness.is_some() {
        if !inputs.is_empty() {
            let msg = "an `async fn` test takes no arguments: it runs on the proactor's own \
                       `block_on` (use `proactor::Handle::current()` for the handle)";
            return Err(syn::Error::new(f.sig.inputs.span(), msg));
        }
        return Ok(Form::Async);
    }
    let arg = match inputs.as_slice() {
        [FnArg::Typed(arg)] => arg,
        [] => return Err(syn::Error::new(f.sig.span(), FORMS)),
        _ => return Err(syn::Error::new(f.sig.inputs.span(), FORMS)),
    };
    let form = match &*arg.ty {
        Type::Reference(r) if r.mutability.is_none() => match last_ident(&r.elem).as_deref() {
            Some("Proactor") => Some(Form::Proactor),
            Some("str") => Some(Form::Name),
            _ => None,
        },
        ty => match last_ident(ty).as_deref() {
            Some("DriverChoice") => Some(Form::Choice),
            _ => None,
        },
    };
    form.ok_or_else(|| syn::Error::new(arg.ty.span(), FORMS))
}

/// Runs an `async fn main` on a proactor. See `proactor::main`.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_main(args, item).unwrap_or_else(|e| e.to_compile_error()).into()
}

/// Runs a test once per driver, each on its own proactor. See `proactor::test`.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand_test(args, item).unwrap_or_else(|e| e.to_compile_error()).into()
}

fn output_type(f: &ItemFn) -> Tokens {
    match &f.sig.output {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, ty) => quote!(#ty),
    }
}

fn expand_main(args: TokenStream, item: TokenStream) -> syn::Result<Tokens> {
    let opts = parse_options(args, false)?;
    let mut f: ItemFn = syn::parse(item)?;
    if f.sig.asyncness.is_none() {
        return Err(syn::Error::new(f.sig.fn_token.span(), "the function must be `async fn`"));
    }
    if !f.sig.inputs.is_empty() {
        return Err(syn::Error::new(f.sig.inputs.span(), "the function must take no arguments"));
    }
    f.sig.asyncness = None;
    let body = &f.block;
    let output = output_type(&f);
    let entries = entries_tokens(opts.entries);
    let span = f.sig.ident.span();
    let choice = match &opts.driver {
        Some((d, _)) => driver_choice(d),
        None => quote!(::proactor::DriverChoice::Auto),
    };
    let (attrs, vis, sig) = (&f.attrs, &f.vis, &f.sig);
    // The body becomes an inner `async fn` with the declared return type, so `?` in it infers as
    // it does in any function.
    Ok(quote_spanned! {span=>
        #(#attrs)*
        #vis #sig {
            async fn __proactor_body() -> #output #body
            ::proactor::__macro_support::build(#choice, #entries).block_on(__proactor_body())
        }
    })
}

fn expand_test(args: TokenStream, item: TokenStream) -> syn::Result<Tokens> {
    let opts = parse_options(args, true)?;
    let mut f: ItemFn = syn::parse(item)?;
    let form = test_form(&f)?;
    if let (Some((_, span)), Form::Choice | Form::Name) = (opts.entries, &form) {
        let msg = "`entries` sizes the proactor the test is given: a test that takes the driver \
                   builds its own";
        return Err(syn::Error::new(span, msg));
    }
    let support = quote!(::proactor::__macro_support);
    let runs = match (&opts.driver, &opts.only) {
        (Some((one, _)), _) if one != "both" => {
            let c = driver_choice(one);
            quote!(&[#support::Run::On(#c)])
        }
        (_, Some((only, why))) => {
            let (on, off) = if *only == "uring" { ("uring", "epoll") } else { ("epoll", "uring") };
            let (on, off) = (driver_choice(on), driver_choice(off));
            // In the order of the default runs, io_uring first.
            if *only == "uring" {
                quote!(&[#support::Run::On(#on), #support::Run::Skip(#off, #why)])
            } else {
                quote!(&[#support::Run::Skip(#off, #why), #support::Run::On(#on)])
            }
        }
        _ => quote!(&[
            #support::Run::On(::proactor::DriverChoice::Uring),
            #support::Run::On(::proactor::DriverChoice::Epoll)
        ]),
    };
    let entries = entries_tokens(opts.entries);
    let body = &f.block;
    let output = output_type(&f);
    let span = f.sig.ident.span();
    let name = f.sig.ident.to_string();
    // The body becomes an inner function with the declared argument and return type, so `?` in
    // it infers as it does in any function, and the test itself takes nothing and returns `()`.
    // The closure's `__driver` is made and used at the call site (one hygiene context, also when
    // the attribute is written by a `macro_rules!`).
    let (inner, call) = match form {
        Form::Async => (
            quote_spanned! {span=> async fn __proactor_body() -> #output #body },
            quote!(|__driver| #support::build(__driver, #entries).block_on(__proactor_body())),
        ),
        Form::Proactor | Form::Choice | Form::Name => {
            let arg = &f.sig.inputs;
            let given = match form {
                Form::Proactor => quote!(&#support::build(__driver, #entries)),
                Form::Choice => quote!(__driver),
                _ => quote!(#support::driver_arg(__driver)),
            };
            (
                quote_spanned! {span=> fn __proactor_body(#arg) -> #output #body },
                quote!(|__driver| __proactor_body(#given)),
            )
        }
    };
    f.sig.asyncness = None;
    f.sig.inputs = Punctuated::new();
    f.sig.output = syn::ReturnType::Default;
    let (attrs, vis, sig) = (&f.attrs, &f.vis, &f.sig);
    Ok(quote! {
        #[::core::prelude::v1::test]
        #(#attrs)*
        #vis #sig {
            #inner
            #support::run_test(
                ::core::concat!(::core::module_path!(), "::", #name),
                #runs,
                #call,
            )
        }
    })
}
