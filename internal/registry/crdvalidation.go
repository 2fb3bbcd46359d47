package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structurallisttype "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	schemaobjectmeta "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/operation"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/features"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/clustertrust/clustertrust/api/v1alpha1"
	"github.com/clustertrust/clustertrust/config/crd"
)

// crdValidator admits an OpenIDConnect the way kube-apiserver admits a create of it, from the very CRD
// `make manifests` generates (embedded by config/crd), so an object from a file passes exactly the rules an
// object from the API passes: its OpenAPI v3 schema (types, enums, patterns, bounds, required), its
// x-kubernetes-list-type invariants and its x-kubernetes-validations CEL rules, after the schema's defaults.
//
// It mirrors k8s.io/apiextensions-apiserver: the decoding of customresource_handler.go
// (unstructuredSchemaCoercer, then unstructuredDefaulter) and customresource.NewStrategy's
// PrepareForCreate and Validate, followed by the ObjectMeta check of k8s.io/apiserver's
// rest.ValidateCreate. Importing that strategy itself would link the generic registry and its etcd
// client into the webhook; the integration suite instead proves, object by object, that the messages
// are the API server's own.
type crdValidator struct {
	kind            schema.GroupVersionKind
	namespaced      bool
	statusResource  bool // the status subresource is on, so a create drops status
	structural      *structuralschema.Structural
	schemaValidator apiservervalidation.SchemaValidator
	celValidator    *cel.Validator // nil when the schema has no x-kubernetes-validations
}

// openIDConnectValidator builds the validator once: compiling the CRD's CEL rules is the expensive part.
var openIDConnectValidator = sync.OnceValues(func() (*crdValidator, error) {
	v, err := newCRDValidator(crd.OpenIDConnects, v1alpha1.GroupVersion.WithKind("OpenIDConnect"))
	if err != nil {
		return nil, fmt.Errorf("the embedded OpenIDConnect CRD is unusable: %w", err)
	}
	return v, nil
})

// newCRDValidator builds the validator of version gvk.Version of a CRD manifest, as the API server's
// crdHandler.getOrCreateServingInfoFor does.
func newCRDValidator(manifest []byte, gvk schema.GroupVersionKind) (*crdValidator, error) {
	var def apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(manifest, &def); err != nil {
		return nil, err
	}
	if def.Spec.Group != gvk.Group || def.Spec.Names.Kind != gvk.Kind {
		return nil, fmt.Errorf("it defines %s.%s, not %s", def.Spec.Names.Kind, def.Spec.Group, gvk.GroupKind())
	}
	var version *apiextensionsv1.CustomResourceDefinitionVersion
	for i := range def.Spec.Versions {
		if def.Spec.Versions[i].Name == gvk.Version {
			version = &def.Spec.Versions[i]
		}
	}
	if version == nil || version.Schema == nil || version.Schema.OpenAPIV3Schema == nil {
		return nil, fmt.Errorf("it has no schema for version %s", gvk.Version)
	}
	if def.Spec.PreserveUnknownFields {
		return nil, errors.New("it preserves unknown fields, which a structural schema never does")
	}

	internal := &apiextensions.CustomResourceValidation{}
	if err := apiextensionsv1.Convert_v1_CustomResourceValidation_To_apiextensions_CustomResourceValidation(version.Schema, internal, nil); err != nil {
		return nil, err
	}
	s, err := structuralschema.NewStructural(internal.OpenAPIV3Schema)
	if err != nil {
		return nil, err
	}
	s = s.DeepCopy() // PruneDefaults changes defaults in place
	if err := structuraldefaulting.PruneDefaults(s); err != nil {
		return nil, err
	}
	schemaValidator, _, err := apiservervalidation.NewSchemaValidator(internal.OpenAPIV3Schema)
	if err != nil {
		return nil, err
	}
	return &crdValidator{
		kind:            gvk,
		namespaced:      def.Spec.Scope == apiextensionsv1.NamespaceScoped,
		statusResource:  version.Subresources != nil && version.Subresources.Status != nil,
		structural:      s,
		schemaValidator: schemaValidator,
		// The per-call limit the API server compiles with; Validate gets its per-request budget.
		celValidator: cel.NewValidator(s, true, celconfig.PerCallLimit),
	}, nil
}

// admit does to u what a create of u with fieldValidation=Strict (kubectl's default) does before
// storage: it refuses unknown fields, applies the schema's defaults, drops status, and validates. The
// error is the one the API server returns, message for message: a BadRequest for what fails to decode
// (an unknown field, malformed metadata) and an Invalid listing every broken rule otherwise.
//
// Unknown fields are refused, not pruned: the API server prunes them silently unless the client asks for
// strict validation, but in a file a misspelled field is a mistake the operator wants to hear about.
func (v *crdValidator) admit(ctx context.Context, u *unstructured.Unstructured) error {
	// Decoding: customresource_handler.go's schemaCoercingDecoder and unstructuredDefaulter.
	unknown, err := v.coerce(u)
	if err == nil && len(unknown) > 0 {
		errs := make([]error, 0, len(unknown))
		for _, path := range unknown {
			errs = append(errs, fmt.Errorf(`unknown field "%s"`, path))
		}
		err = runtime.NewStrictDecodingError(errs)
	}
	if err != nil {
		// What the create handler's transformDecodeError makes of a decoding error.
		return apierrors.NewBadRequest(fmt.Sprintf("%s in version %q cannot be handled as a %s: %v", v.kind.Kind, v.kind.Version, v.kind.Kind, err))
	}
	structuraldefaulting.Default(u.Object, v.structural)

	// customResourceStrategy.PrepareForCreate.
	if v.statusResource {
		delete(u.Object, "status")
	}
	u.SetGeneration(1)

	// rest.ValidateCreate: the strategy's Validate, then the generic ObjectMeta check when that passed.
	errs := v.validate(ctx, u)
	if len(errs) == 0 {
		errs = metavalidation.ValidateObjectMetaAccessor(u, v.namespaced, func(name string, prefix bool) []string {
			if prefix {
				return content.IsPathSegmentPrefix(name)
			}
			return content.IsPathSegmentName(name)
		}, field.NewPath("metadata"))
	}
	if len(errs) > 0 {
		return apierrors.NewInvalid(v.kind.GroupKind(), u.GetName(), errs)
	}
	return nil
}

// coerce is unstructuredSchemaCoercer.apply with strict field validation: it prunes what the schema does
// not know and returns the paths it pruned, sorted as the API server sorts them.
func (v *crdValidator) coerce(u *unstructured.Unstructured) ([]string, error) {
	kind, apiVersion := u.GetKind(), u.GetAPIVersion()
	objectMeta, foundObjectMeta, unknown, err := schemaobjectmeta.GetObjectMetaWithOptions(u.Object, schemaobjectmeta.ObjectMetaOptions{ReturnUnknownFieldPaths: true})
	if err != nil {
		return nil, err
	}
	unknown = append(unknown, structuralpruning.PruneWithOptions(u.Object, v.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})...)
	structuraldefaulting.PruneNonNullableNullsWithoutDefaults(u.Object, v.structural)
	ferr, paths := schemaobjectmeta.CoerceWithOptions(nil, u.Object, v.structural, false, schemaobjectmeta.CoerceOptions{ReturnUnknownFieldPaths: true})
	if ferr != nil {
		return nil, ferr
	}
	unknown = append(unknown, paths...)
	u.SetKind(kind)
	u.SetAPIVersion(apiVersion)
	if foundObjectMeta {
		if err := schemaobjectmeta.SetObjectMeta(u.Object, objectMeta); err != nil {
			return nil, err
		}
	}
	return unknown, nil
}

// validate is customResourceStrategy.Validate (customResourceValidator.Validate without the scale
// subresource, which the CRD does not have).
func (v *crdValidator) validate(ctx context.Context, u *unstructured.Unstructured) field.ErrorList {
	var errs field.ErrorList
	if u.GetKind() != v.kind.Kind {
		errs = append(errs, field.Invalid(field.NewPath("kind"), u.GetKind(), fmt.Sprintf("must be %v", v.kind.Kind)))
	}
	if u.GetAPIVersion() != v.kind.GroupVersion().String() {
		errs = append(errs, field.Invalid(field.NewPath("apiVersion"), u.GetAPIVersion(), fmt.Sprintf("must be %v", v.kind.GroupVersion())))
	}
	if len(errs) > 0 {
		return errs
	}

	if objectMeta, metaErrs := getObjectMeta(u); len(metaErrs) > 0 {
		errs = append(errs, metaErrs...)
	} else {
		errs = append(errs, metavalidation.ValidateObjectMetaDeclaratively(ctx, operation.Create, objectMeta, nil, v.namespaced,
			metavalidation.NameIsDNSSubdomain, field.NewPath("metadata"), utilfeature.DefaultFeatureGate.Enabled(features.DeclarativeValidationBeta))...)
	}
	errs = append(errs, apiservervalidation.ValidateCustomResource(nil, u.UnstructuredContent(), v.schemaValidator)...)
	errs = append(errs, schemaobjectmeta.Validate(ctx, nil, u.Object, v.structural, false)...)
	errs = append(errs, structurallisttype.ValidateListSetsAndMaps(nil, v.structural, u.Object)...)
	if v.celValidator != nil {
		if blocking := blockingError(errs); blocking != nil {
			errs = append(errs, blocking)
		} else {
			celErrs, _ := v.celValidator.Validate(ctx, nil, v.structural, u.Object, nil, celconfig.RuntimeCELCostBudget)
			errs = append(errs, celErrs...)
		}
	}
	return errs
}

// getObjectMeta is the customresource validator's: the metadata of u, empty when u has none.
func getObjectMeta(u *unstructured.Unstructured) (*metav1.ObjectMeta, field.ErrorList) {
	raw := u.Object["metadata"]
	if raw == nil {
		return &metav1.ObjectMeta{}, nil
	}
	metadata, ok := raw.(map[string]any)
	if !ok {
		return nil, field.ErrorList{field.Invalid(field.NewPath("metadata"), raw, fmt.Sprintf("expected map[string]interface{}, got %T", raw))}
	}
	objectMeta := &metav1.ObjectMeta{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(metadata, objectMeta); err != nil {
		return nil, field.ErrorList{field.Invalid(field.NewPath("metadata"), raw, err.Error())}
	}
	return objectMeta, nil
}

// blockingError is the strategy's hasBlockingErr: after a type, enum, required, length or count error the
// CEL rules are not run, since they may assume the schema holds.
func blockingError(errs field.ErrorList) *field.Error {
	for _, err := range errs {
		switch err.Type {
		case field.ErrorTypeNotSupported, field.ErrorTypeRequired, field.ErrorTypeTooLong, field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
			return field.Invalid(nil, nil, "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation")
		}
	}
	return nil
}
