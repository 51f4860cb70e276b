//! `#[proactor::main]` and `#[proactor::test]`, re-exported by `proactor` (feature `macros`, on by
//! default). Both turn an `async fn` into a plain one that builds a proactor and runs the body
//! with `block_on`; `test` runs it once per driver. See the attributes' own docs in `proactor`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ItemFn, Lit, MetaNameValue, Token};

/// What the attribute's arguments asked for.
#[derive(Default)]
struct Options {
    /// `driver = "uring" | "epoll" | "auto"` (for `test`, also `"both"`, the default).
    driver: Option<(String, Span)>,
    /// `entries = N`: the io_uring ring size.
    entries: Option<u32>,
}

fn parse_options(args: TokenStream, allowed: &[&str]) -> syn::Result<Options> {
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
            ("entries", Lit::Int(n)) => opts.entries = Some(n.base10_parse()?),
            ("threads", lit) => {
                return Err(syn::Error::new(
                    lit.span(),
                    "`threads` is not an option: a proactor runs on one thread; to serve on \
                     several, use proactor::threads::serve from main",
                ))
            }
            (_, lit) => {
                let msg = "unknown option: expected `driver = \"...\"` or `entries = N`";
                return Err(syn::Error::new(
                    lit.span().join(pair.path.span()).unwrap_or(lit.span()),
                    msg,
                ));
            }
        }
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

fn entries_tokens(entries: Option<u32>) -> Tokens {
    match entries {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    }
}

fn require_async(f: &ItemFn) -> syn::Result<()> {
    if f.sig.asyncness.is_none() {
        return Err(syn::Error::new(f.sig.fn_token.span(), "the function must be `async fn`"));
    }
    if !f.sig.inputs.is_empty() {
        return Err(syn::Error::new(f.sig.inputs.span(), "the function must take no arguments"));
    }
    Ok(())
}

/// Runs an `async fn main` on a proactor. See `proactor::main`.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args, item, false).unwrap_or_else(|e| e.to_compile_error()).into()
}

/// Runs an `async fn` test on a proactor, once per driver by default. See `proactor::test`.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(args, item, true).unwrap_or_else(|e| e.to_compile_error()).into()
}

fn expand(args: TokenStream, item: TokenStream, test: bool) -> syn::Result<Tokens> {
    let allowed: &[&str] =
        if test { &["both", "uring", "epoll", "auto"] } else { &["uring", "epoll", "auto"] };
    let opts = parse_options(args, allowed)?;
    let mut f: ItemFn = syn::parse(item)?;
    require_async(&f)?;
    f.sig.asyncness = None;
    let body = &f.block;
    let output = match &f.sig.output {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, ty) => quote!(#ty),
    };
    let entries = entries_tokens(opts.entries);
    let span = f.sig.ident.span();
    let new_body = if test {
        let drivers = match opts.driver.as_ref().map(|(d, _)| d.as_str()) {
            None | Some("both") => {
                quote!(&[::proactor::DriverChoice::Uring, ::proactor::DriverChoice::Epoll])
            }
            Some(one) => {
                let c = driver_choice(one);
                quote!(&[#c])
            }
        };
        let name = f.sig.ident.to_string();
        quote_spanned! {span=>
            {
                ::proactor::__macro_support::run_test(
                    ::core::concat!(::core::module_path!(), "::", #name),
                    #drivers,
                    #entries,
                    __proactor_body,
                )
            }
        }
    } else {
        let choice = match &opts.driver {
            Some((d, _)) => driver_choice(d),
            None => quote!(::proactor::DriverChoice::Auto),
        };
        quote_spanned! {span=>
            {
                ::proactor::__macro_support::build(#choice, #entries).block_on(__proactor_body())
            }
        }
    };
    // The body becomes an inner `async fn` with the declared return type, so `?` in it infers as
    // it does in any function.
    let inner = quote_spanned! {span=>
        async fn __proactor_body() -> #output #body
    };
    f.sig.output = if test { syn::ReturnType::Default } else { f.sig.output.clone() };
    let attrs = &f.attrs;
    let vis = &f.vis;
    let sig = &f.sig;
    let test_attr = if test { quote!(#[::core::prelude::v1::test]) } else { quote!() };
    Ok(quote! {
        #test_attr
        #(#attrs)*
        #vis #sig {
            #inner
            #new_body
        }
    })
}
