# A static stashnode in an image with nothing else in it.
#   docker build -t stash:dev .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /stashnode ./cmd/stashnode

FROM scratch
COPY --from=build /stashnode /stashnode
# client (RESP), admin (HTTP), gossip (TCP+UDP), cluster (raft + data)
EXPOSE 6380 8380 7946 7946/udp 7380
VOLUME ["/data"]
ENTRYPOINT ["/stashnode"]
