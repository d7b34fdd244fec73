//! The `#[step]` and `#[workflow]` attributes of the Ferry guest SDK. Use
//! them through `ferry_sdk::step` and `ferry_sdk::workflow`.
//!
//! Each attribute keeps the function as written and adds a private module
//! that runs `wit_bindgen::generate!` for the component's own world (`step`
//! or `workflow` of `ferry:runtime@0.1.0`), with every imported interface
//! mapped onto the bindings already generated in `ferry_sdk::bindings`. The
//! export glue is thus generated in the user's crate, and the component-type
//! section it carries describes that world only.

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{FnArg, ItemFn, ReturnType, Type, parse_macro_input, spanned::Spanned};

/// Absolute path of the WIT package, fixed when this crate is compiled (so
/// that it does not depend on where the user's crate lives).
const WIT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../wit/runtime@0.1.0");

/// Marks the entry point of a step component. See `ferry_sdk::step`.
#[proc_macro_attribute]
pub fn step(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Step, attr, item)
}

/// Marks the entry point of a workflow component. See `ferry_sdk::workflow`.
#[proc_macro_attribute]
pub fn workflow(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Workflow, attr, item)
}

#[derive(Clone, Copy)]
enum Kind {
    Step,
    Workflow,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Step => "step",
            Kind::Workflow => "workflow",
        }
    }

    /// The interfaces the world imports besides `types`.
    fn imports(self) -> [&'static str; 2] {
        match self {
            Kind::Step => ["context", "http"],
            Kind::Workflow => ["context", "orchestration"],
        }
    }
}

fn expand(kind: Kind, attr: TokenStream, item: TokenStream) -> TokenStream {
    let attr = proc_macro2::TokenStream::from(attr);
    let func = parse_macro_input!(item as ItemFn);
    match generate(kind, attr, func) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn generate(kind: Kind, attr: proc_macro2::TokenStream, func: ItemFn) -> syn::Result<proc_macro2::TokenStream> {
    check_signature(kind, &attr, &func)?;

    let ident = &func.sig.ident;
    let module = format_ident!("__ferry_{}_{}", kind.name(), ident);
    let what = format!("{} `{}`", kind.name(), ident);
    let world = format!("ferry:runtime/{}@0.1.0", kind.name());

    let mut with = vec![quote! {
        "ferry:runtime/types@0.1.0": ::ferry_sdk::bindings::ferry::runtime::types,
    }];
    for iface in kind.imports() {
        let key = format!("ferry:runtime/{iface}@0.1.0");
        let path = format_ident!("{}", iface);
        with.push(quote! { #key: ::ferry_sdk::bindings::ferry::runtime::#path, });
    }

    let call = if returns_result(&func.sig.output) {
        quote! { |input| super::#ident(input).map_err(::core::convert::Into::into) }
    } else {
        quote! { |input| ::core::result::Result::Ok(super::#ident(input)) }
    };

    Ok(quote! {
        #func

        #[doc(hidden)]
        #[allow(unsafe_code, missing_docs, non_snake_case, clippy::all)]
        mod #module {
            ::ferry_sdk::__private::wit_bindgen::generate!({
                path: #WIT_DIR,
                world: #world,
                runtime_path: "::ferry_sdk::__private::wit_bindgen::rt",
                with: { #(#with)* },
            });

            struct Component;

            impl Guest for Component {
                fn run(
                    input: ::std::string::String,
                ) -> ::core::result::Result<::std::string::String, StepError> {
                    ::ferry_sdk::__private::run_json(#what, &input, #call)
                }
            }

            export!(Component);
        }
    })
}

fn check_signature(kind: Kind, attr: &proc_macro2::TokenStream, func: &ItemFn) -> syn::Result<()> {
    let name = kind.name();
    if !attr.is_empty() {
        return Err(syn::Error::new(attr.span(), format!("#[{name}] takes no arguments")));
    }
    let sig = &func.sig;
    if let Some(token) = &sig.asyncness {
        return Err(syn::Error::new(
            token.span(),
            format!("a #[{name}] function cannot be async: Ferry calls it synchronously"),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(sig.generics.span(), format!("a #[{name}] function cannot be generic")));
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new(v.span(), format!("a #[{name}] function cannot be variadic")));
    }
    let usage = format!(
        "a #[{name}] function takes exactly one argument, its input \
         (any serde Deserialize type), e.g. `fn {}(input: In) -> Result<Out, ferry_sdk::Error>`",
        sig.ident
    );
    match sig.inputs.len() {
        0 => return Err(syn::Error::new(sig.paren_token.span.join(), usage)),
        1 => {}
        _ => return Err(syn::Error::new_spanned(&sig.inputs, usage)),
    }
    if let Some(FnArg::Receiver(r)) = sig.inputs.first() {
        return Err(syn::Error::new(r.span(), usage));
    }
    if let ReturnType::Type(_, ty) = &sig.output
        && let Type::ImplTrait(_) = **ty
    {
        return Err(syn::Error::new(
            ty.span(),
            format!("a #[{name}] function must name its return type (no `impl Trait`)"),
        ));
    }
    Ok(())
}

/// Whether the declared return type is a `Result` (by its last path
/// segment: `Result`, `ferry_sdk::Result`, `std::result::Result`…).
fn returns_result(output: &ReturnType) -> bool {
    let ReturnType::Type(_, ty) = output else {
        return false;
    };
    let mut ty = &**ty;
    while let Type::Paren(p) = ty {
        ty = &p.elem;
    }
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
        _ => false,
    }
}
