package scenarios

import "fmt"

// getipApp is a Deployment of the seed's "getip" backend with n replicas
// (each answers GET /info with its pod IP and MAC), a ClusterIP Service in
// front of it, and a client pod on node1 that sends the requests.
func getipApp(replicas int, serviceExtra string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: getip-deployment
spec:
  replicas: %d
  selector:
    matchLabels:
      app: getip
  template:
    metadata:
      labels:
        app: getip
    spec:
      containers:
        - name: getip
          image: getip
          ports:
            - containerPort: 80
              name: http
---
apiVersion: v1
kind: Service
metadata:
  name: getip-service
spec:
  selector:
    app: getip
  ports:
    - protocol: TCP
      port: 80
      targetPort: http
%s---
apiVersion: v1
kind: Pod
metadata:
  name: client
  labels:
    role: client
spec:
  nodeName: node1
  containers:
    - name: client
      image: curl
`, replicas, serviceExtra)
}

// seedMyHTTPv2Service is the seed's first manifest, exactly as written there.
const seedMyHTTPv2Service = `apiVersion: v1
kind: Service
metadata:
  name: myhttp-v2-service
spec:
  selector:
    app: myhttp-v2
  type: NodePort
  ports:
    - protocol: TCP
      port: 8800
      targetPort: 80
      nodePort: 30080
`

// myHTTPv2 is the Deployment behind the seed's myhttp-v2-service; the seed
// does not show it, so its pods declare no ports and listen on the Service's
// targetPort.
const myHTTPv2 = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: myhttp-v2
spec:
  replicas: 2
  selector:
    matchLabels:
      app: myhttp-v2
  template:
    metadata:
      labels:
        app: myhttp-v2
    spec:
      containers:
        - name: myhttp
          image: myhttp:v2
`

// udpEchoApp is a Deployment of UDP echo servers (port 5353) behind the
// Service echo-udp (port 53).
func udpEchoApp(replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
spec:
  replicas: %d
  selector:
    matchLabels:
      app: echo
  template:
    metadata:
      labels:
        app: echo
    spec:
      containers:
        - name: echo
          image: echo
          ports:
            - containerPort: 5353
              protocol: UDP
---
apiVersion: v1
kind: Service
metadata:
  name: echo-udp
spec:
  selector:
    app: echo
  ports:
    - protocol: UDP
      port: 53
      targetPort: 5353
`, replicas)
}
