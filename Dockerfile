# The clustertrust image: a static binary on a distroless base, running as non-root.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY internal/ internal/
COPY config/crd/ config/crd/
RUN CGO_ENABLED=0 go build -trimpath -ldflags=-s -o /webhook ./cmd/webhook

FROM gcr.io/distroless/static:nonroot
COPY --from=build /webhook /webhook
USER 65532:65532
ENTRYPOINT ["/webhook"]
